"""OpenAI's `integrations` of a job request, as the training config's tracker settings.

    {"integrations": [{"type": "wandb", "wandb": {"project": "orders", "tags": ["v2"]}}]}
    -> train.report_to: [wandb], wandb.project: orders, train.tracking_tags: {v2: "true", job: …, project: …}

Every tracked job carries its job id and project as tags. An MLflow URI from a request must be
http(s): a file or database URI would let a request write wherever the server may.
"""

from __future__ import annotations

from typing import Any

from tunery.service.errors import ApiError
from tunery.service.schemas.jobs import Integration


def tracking_settings(integrations: list[Integration] | None, job_id: str, project: str | None) -> dict:
    """Config sections (train.report_to, wandb, mlflow, train.tracking_tags) for the requested trackers."""
    if not integrations:
        return {}
    sections: dict[str, Any] = {"report_to": [], "tracking_tags": {"job": job_id, "project": project or ""}}
    for index, integration in enumerate(integrations):
        sections["report_to"].append(integration.type)
        options = (
            dict(getattr(integration, integration.type, None) or {})
            if integration.type != "tensorboard"
            else {}
        )
        for tag in options.pop("tags", None) or []:
            sections["tracking_tags"][str(tag)] = "true"
        uri = options.get("tracking_uri")
        if uri is not None and not str(uri).startswith(("http://", "https://")):
            raise ApiError(
                400, "an MLflow tracking_uri from a request must be an http(s) server URL",
                param=f"integrations[{index}].mlflow.tracking_uri",
            )  # fmt: skip
        if options:
            sections[integration.type] = options
    return sections
