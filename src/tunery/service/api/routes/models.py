"""`/v1/models`: the project's fine-tuned models (the registry, OpenAI-shaped)."""

from __future__ import annotations

from fastapi import APIRouter

from tunery.service.api.deps import CurrentProject, SessionDep, SettingsDep
from tunery.service.domain import models
from tunery.service.domain.lookups import get_model
from tunery.service.schemas.common import Deleted, ListPage
from tunery.service.schemas.models import ModelPublic

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ListPage[ModelPublic])
def list_models(session: SessionDep, project: CurrentProject, settings: SettingsDep) -> ListPage[ModelPublic]:
    """The project's fine-tuned models, then the base models any key may chat with."""
    bases = [ModelPublic(id=name, created=0, owned_by="tunery") for name in settings.inference_base_models]
    return ListPage.of([ModelPublic.of(m) for m in models.list_models(session, project)] + bases)


@router.get("/{model_id:path}", response_model=ModelPublic)
def retrieve_model(
    model_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> ModelPublic:
    if model_id in settings.inference_base_models:  # listed above, so it can be opened too
        return ModelPublic(id=model_id, created=0, owned_by="tunery")
    return ModelPublic.of(get_model(session, project, model_id))


@router.delete("/{model_id:path}", response_model=Deleted)
def delete_model(model_id: str, session: SessionDep, project: CurrentProject) -> Deleted:
    """Remove the model from the registry; the job's run directory (and adapter) stays."""
    models.delete_model(session, project, model_id)
    return Deleted(id=model_id, object="model")
