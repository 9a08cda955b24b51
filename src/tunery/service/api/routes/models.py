"""`/v1/models`: the project's fine-tuned models (the registry, OpenAI-shaped)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from tunery.service.api.deps import CurrentProject, SessionDep, get_owned
from tunery.service.schemas.common import Deleted, ListPage
from tunery.service.schemas.models import ModelPublic
from tunery.store.tables import Model

router = APIRouter(prefix="/v1/models", tags=["models"])


def get_model(session, project: str, model_id: str) -> Model:
    return get_owned(session, Model, model_id, project, "model")


@router.get("", response_model=ListPage[ModelPublic])
def list_models(session: SessionDep, project: CurrentProject) -> ListPage[ModelPublic]:
    models = session.scalars(select(Model).where(Model.project == project).order_by(Model.seq.desc())).all()
    return ListPage.of([ModelPublic.of(m) for m in models])


@router.get("/{model_id:path}", response_model=ModelPublic)
def retrieve_model(model_id: str, session: SessionDep, project: CurrentProject) -> ModelPublic:
    return ModelPublic.of(get_model(session, project, model_id))


@router.delete("/{model_id:path}", response_model=Deleted)
def delete_model(model_id: str, session: SessionDep, project: CurrentProject) -> Deleted:
    """Remove the model from the registry; the job's run directory (and adapter) stays."""
    session.delete(get_model(session, project, model_id))
    session.commit()
    return Deleted(id=model_id, object="model")
