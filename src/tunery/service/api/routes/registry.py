"""`/api/registry`: every fine-tuned model with its lineage (base model, data, config, metrics, artifact)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from tunery.service.api.deps import CurrentProject, SessionDep
from tunery.service.api.routes.models import get_model
from tunery.service.schemas.common import ListPage
from tunery.service.schemas.models import ModelLineage
from tunery.store.tables import Model

router = APIRouter(prefix="/api/registry", tags=["registry"])


@router.get("", response_model=ListPage[ModelLineage])
def list_registry(
    session: SessionDep, project: CurrentProject, base_model: str | None = None
) -> ListPage[ModelLineage]:
    query = select(Model).where(Model.project == project).order_by(Model.seq.desc())
    if base_model:
        query = query.where(Model.base_model == base_model)
    return ListPage.of([ModelLineage.of(m) for m in session.scalars(query).all()])


@router.get("/{model_id:path}", response_model=ModelLineage)
def model_lineage(model_id: str, session: SessionDep, project: CurrentProject) -> ModelLineage:
    return ModelLineage.of(get_model(session, project, model_id))
