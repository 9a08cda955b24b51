from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from tunery.service.public import public_config, public_value
from tunery.store.tables import Model


class ModelPublic(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str

    @classmethod
    def of(cls, model: Model) -> ModelPublic:
        return cls(id=model.id, created=model.created_at, owned_by=model.project)


class ModelLineage(ModelPublic):
    """A registry entry: where the model came from and where its weights are."""

    base_model: str
    job_id: str | None
    artifact: str
    lineage: dict[str, Any]

    @classmethod
    def of(cls, model: Model) -> ModelLineage:
        return cls(
            id=model.id, created=model.created_at, owned_by=model.project, base_model=model.base_model,
            job_id=model.job_id, artifact=model.path, lineage=public_lineage(model.lineage, model.base_model),
        )  # fmt: skip


def public_lineage(lineage: dict[str, Any], base_model: str) -> dict[str, Any]:
    """The lineage without server paths: its config as the job's (public_config), the rest shortened."""
    shown = public_value(lineage, keep={base_model})
    if isinstance(lineage.get("config"), dict):
        shown["config"] = public_config(
            lineage["config"], base_model, lineage.get("training_file") or "", lineage.get("validation_file")
        )
    return shown
