"""`/api/keys`: the project's own API keys; revoking one ends its API access and dashboard sessions at once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from tunery.service import keys
from tunery.service.api.deps import CurrentProject, SessionDep
from tunery.service.errors import not_found
from tunery.service.schemas.common import ListPage
from tunery.service.schemas.keys import KeyPublic

router = APIRouter(prefix="/api/keys", tags=["keys"])
KeyId = Annotated[str, Path(max_length=40, description="A key's id (`key-…`), as `GET /api/keys` lists it.")]


@router.get("", response_model=ListPage[KeyPublic])
def list_keys(session: SessionDep, project: CurrentProject) -> ListPage[KeyPublic]:
    """The calling project's keys, newest first (revoked ones too, marked)."""
    return ListPage.of([KeyPublic.of(key) for key in keys.list_keys(session, project)])


@router.delete("/{key_id}", response_model=KeyPublic)
def revoke_key(key_id: KeyId, session: SessionDep, project: CurrentProject) -> KeyPublic:
    """Revoke one of the project's keys (the calling key too); another project's key is a 404."""
    key = keys.revoke_key(session, key_id, project=project)
    if key is None:
        raise not_found("api_key", key_id)
    session.commit()
    return KeyPublic.of(key)
