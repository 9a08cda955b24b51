"""What a project sees of its stored rows: ids and relative names, never a server path.

    JobPublic(tunery=public_config(job.config, job.model, job.training_file, job.validation_file), ...)
    RunPublic(record=public_value(run.record, keep={job.model}), ...)

The database and the run folders keep absolute paths (training needs them); the API and the
dashboard shape them away here, in one place: the model as the request named it, data as file
ids, a run as `jobs/<job-id>`, any other path as its last part. `keep` holds strings the caller
itself sent (a model folder under the server's model roots), which are echoed as sent.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection
from typing import Any

from tunery.jobs.lifecycle import without_server_paths

# An absolute path of the service's storage: users see it from its artifact folder on (`jobs/ftjob-1`).
_STORED = re.compile(r"^/.*?/(?P<relative>(?:jobs|files|exports|models)/[^/]+(?:/.*)?)$")


def public_value(value: Any, keep: Collection[str] = ()) -> Any:
    """`value` (any JSON) with every server path in its strings shortened; `keep` is left as it is."""
    if isinstance(value, dict):
        return {key: public_value(item, keep) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [public_value(item, keep) for item in value]
    if not isinstance(value, str) or value in keep:
        return value
    if stored := _STORED.match(value):
        return stored["relative"]
    if value.startswith(("/", "~")) and " " not in value:
        return value.rstrip("/").rsplit("/", 1)[-1]
    return without_server_paths(value)


def public_config(
    config: dict[str, Any], model: str, training_file: str, validation_file: str | None
) -> dict:
    """A job's training config as its project sees it: the model, data and output by the names the
    request gave them."""
    shown = copy.deepcopy(config)
    if isinstance(shown.get("model"), dict):
        shown["model"]["name"] = model
    if isinstance(shown.get("data"), dict):
        shown["data"]["train"] = training_file
        if shown["data"].get("validation"):
            shown["data"]["validation"] = validation_file
    if "output_dir" in shown:
        shown["output_dir"] = "jobs"
    return public_value(shown, keep={model})
