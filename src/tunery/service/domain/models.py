"""The project's fine-tuned models: the registry, with each model's lineage."""

from __future__ import annotations

import io
import zipfile

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunery.service.domain.lookups import get_model
from tunery.service.errors import ApiError
from tunery.settings import Settings
from tunery.store.tables import Model


def list_models(session: Session, project: str, base_model: str | None = None) -> list[Model]:
    """Newest first; only those fine-tuned from `base_model` when it is given."""
    query = select(Model).where(Model.project == project).order_by(Model.seq.desc())
    if base_model:
        query = query.where(Model.base_model == base_model)
    return list(session.scalars(query).all())


def delete_model(session: Session, project: str, model_id: str) -> None:
    """Remove the model from the registry; the job's run directory (and adapter) stays."""
    session.delete(get_model(session, project, model_id))
    session.commit()


def adapter_zip(session: Session, project: str, settings: Settings, model_id: str) -> bytes:
    """The model's adapter folder as a zip (what `tunery export RUN --adapter OUT` writes)."""
    model = get_model(session, project, model_id)
    folder = settings.artifacts / model.path
    if not folder.is_dir():
        raise ApiError(
            404, f"the adapter of {model_id} is no longer on disk ({model.path})", code="artifact_missing"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"adapter/{path.relative_to(folder)}")
    return buffer.getvalue()
