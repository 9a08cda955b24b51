"""Every model a request names, resolved for the project that names it.

    ref = resolve_model(session, "team-a", settings, "ft:smollm2:team-a:ftjob-1", param="model")
    ref.name   # "ft:smollm2:team-a:ftjob-1": what responses show
    ref.load   # "<artifacts>/jobs/ftjob-1": what training or serving loads

A reference resolves only to
- a registered base model: a bundled alias, one of the operator's `inference_base_models`, or a
  hub id (it names no file of this server; offline it fails when the job loads it);
- a fine-tuned model the project may use (`visible_models`: today its own), by its `ft:` id, or
  one of its checkpoints (`ft:...:ckpt-step-N`);
- a folder under the server's model roots (TUNERY_MODEL_ROOTS), followed through `..` and links.
  Unset roots allow no local path at all.

Never a path into the service's own storage (the artifact root with every project's files, runs and
models, the data folder, merged models), even under a model root: those are named by their ids.
A reference that resolves to nothing is answered as a missing model (404), so a project cannot tell
another's model, or a server folder, from nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from tunery.models import BUNDLED, ModelNotFoundError, refuse_url, tunery_home
from tunery.service.errors import ApiError, refusal
from tunery.settings import Settings
from tunery.store.tables import Checkpoint, Model

CHECKPOINT = re.compile(r"^(?P<model>.+):ckpt-step-(?P<step>\d{1,9})$")
# org/name or a bare name, as the hub spells them; anything with more parts is a path
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


class ModelNotAllowedError(ModelNotFoundError):
    """A model named by a URL: tunery never fetches one."""

    code = "model_not_allowed"


@dataclass(frozen=True)
class ModelReference:
    name: str  # as the caller named it; responses show this
    load: str  # what the server loads: an alias, a hub id, a model folder or a run folder
    model: Model | None = None  # the registry entry of a fine-tuned model
    checkpoint: Checkpoint | None = None  # one of its checkpoints, when the name picks one

    @property
    def is_run(self) -> bool:
        return self.model is not None


def visible_models(project: str) -> Select:
    """The fine-tuned models a project may name: its own. Sharing a model with other projects
    extends this query, and every reference follows."""
    return select(Model).where(Model.project == project)


def find_fine_tuned(session: Session, project: str, name: str) -> tuple[Model, Checkpoint | None] | None:
    """A visible model by its `ft:` id, or one of its checkpoints by `<id>:ckpt-step-N`."""
    model = session.scalar(visible_models(project).where(Model.id == name))
    if model is not None:
        return model, None
    picked = CHECKPOINT.match(name)
    if picked is None:
        return None
    owner = session.scalar(visible_models(project).where(Model.id == picked["model"]))
    saved = owner and session.scalar(
        select(Checkpoint).where(Checkpoint.job_id == owner.job_id, Checkpoint.step == int(picked["step"]))
    )
    return (owner, saved) if owner is not None and saved is not None else None


def missing(name: str, param: str) -> ApiError:
    return ApiError(404, f"The model '{name[:200]}' does not exist", code="model_not_found", param=param)


def resolve_model(
    session: Session, project: str, settings: Settings, name: str, param: str = "model"
) -> ModelReference:
    """What `name` names for `project`; 400 for a URL, 404 (as for a missing model) for anything else
    it may not use."""
    try:
        refuse_url(name)
    except ModelNotFoundError as err:
        raise refusal(ModelNotAllowedError(str(err)), param=param) from None
    if name in BUNDLED or name in settings.inference_base_models:
        return ModelReference(name, name)
    if (found := find_fine_tuned(session, project, name)) is not None:
        model, checkpoint = found
        run_dir = (settings.artifacts / model.path).parent
        return ModelReference(name, str(run_dir), model, checkpoint)
    if looks_local(name, private_roots(settings)):
        return ModelReference(name, str(allowed_local_path(name, settings, param)))
    if HUB_ID.match(name) and ":" not in name:
        return ModelReference(name, name)
    raise missing(name, param)


def looks_local(name: str, private: list[Path]) -> bool:
    """A path rather than an id: absolute, relative, home-based, a .gguf file, or something the
    working folder or the service's storage holds (a hub-like `jobs/ftjob-1` is a path there:
    a worker started in that folder would load it)."""
    if name.startswith((".", "/", "~", "\\")) or "\\" in name or name.count("/") > 1:
        return True
    try:
        return name.endswith(".gguf") or any((folder / name).exists() for folder in [Path(), *private])
    except OSError:  # a name too long for the file system
        return True


def allowed_local_path(name: str, settings: Settings, param: str) -> Path:
    """The folder `name` resolves to (links and `..` followed), when it is under a model root and
    outside the service's own storage; otherwise a 404 like a missing model."""
    try:
        resolved = Path(name).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte
        raise missing(name, param) from None
    roots = [Path(root).expanduser().resolve() for root in settings.model_roots or []]
    inside = any(resolved.is_relative_to(root) for root in roots)
    if not inside or any(resolved.is_relative_to(private) for private in private_roots(settings)):
        raise missing(name, param)
    return resolved


def private_roots(settings: Settings) -> list[Path]:
    """Where the service keeps what belongs to projects: never loadable by path."""
    return [
        settings.artifacts.expanduser().resolve(),
        settings.data_dir.expanduser().resolve(),
        (tunery_home() / "merged").resolve(),  # runs started from another: their parents' weights
    ]


def base_model(session: Session, project: str, settings: Settings, name: str, param: str = "model") -> str:
    """What loads a base model the project may name (for its tokenizer or shapes); a fine-tuned one is
    refused: name its base."""
    ref = resolve_model(session, project, settings, name, param)
    if ref.is_run:
        raise ApiError(400, f"'{name}' is a fine-tuned model; name its base model",
                       code="model_not_found", param=param)  # fmt: skip
    return ref.load


def resolve_run(session: Session, project: str, settings: Settings, name: str, param: str) -> ModelReference:
    """A fine-tuned model of the project to start from (`tunery.preference.init_from`)."""
    ref = resolve_model(session, project, settings, name, param)
    if not ref.is_run:
        raise missing(name, param)
    return trainable(ref, param)


def trainable(ref: ModelReference, param: str) -> ModelReference:
    """A job starts from a model, not one of its checkpoints."""
    if ref.checkpoint is not None:
        raise ApiError(
            400, f"{ref.name} is a checkpoint; a job starts from a model: use its model id",
            code="model_not_trainable", param=param,
        )  # fmt: skip
    return ref
