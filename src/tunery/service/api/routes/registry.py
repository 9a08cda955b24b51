"""`/api/registry`: every fine-tuned model with its lineage (base model, data, config, metrics, artifact)."""

from __future__ import annotations

from fastapi import APIRouter

from tunery.service.api.deps import CurrentProject, SessionDep
from tunery.service.domain import models
from tunery.service.domain.lookups import get_model
from tunery.service.schemas.common import ListPage
from tunery.service.schemas.models import ModelLineage

router = APIRouter(prefix="/api/registry", tags=["registry"])


@router.get("", response_model=ListPage[ModelLineage])
def list_registry(
    session: SessionDep, project: CurrentProject, base_model: str | None = None
) -> ListPage[ModelLineage]:
    return ListPage.of([ModelLineage.of(m) for m in models.list_models(session, project, base_model)])


@router.get("/{model_id:path}", response_model=ModelLineage)
def model_lineage(model_id: str, session: SessionDep, project: CurrentProject) -> ModelLineage:
    return ModelLineage.of(get_model(session, project, model_id))
