"""Dependencies as `Annotated` aliases, so handlers read `def get(job_id, session: SessionDep, project: CurrentProject)`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from tunery.service import keys
from tunery.service.domain.jobs import Dispatcher
from tunery.service.errors import ApiError
from tunery.service.integers import DB_INT_MAX as DB_INT_MAX  # for typed numbers: le=DB_INT_MAX
from tunery.settings import Settings


def get_session(request: Request) -> Iterator[Session]:
    sessions = request.app.state.sessions
    if request.method in ("GET", "HEAD"):  # reads: no write lock, so 50 readers never queue behind a job
        if getattr(request.app.state, "read_sessions", None) is None:
            from tunery.store.session import read_only_factory

            request.app.state.read_sessions = read_only_factory(sessions)
        sessions = request.app.state.read_sessions
    with sessions() as session:
        yield session


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


SessionDep = Annotated[Session, Depends(get_session)]
PageLimit = Annotated[int, Query(ge=1, le=1000, description="Items per page (1 to 1000).")]
VersionNumber = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="A dataset version (1, 2, ...).")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `tunery keys create --project P`.")
BearerKey = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def bearer_project(session: Session, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The project of a request's Bearer key (`keys.live_key` decides), or a 401 in OpenAI's shape."""
    if credentials is None:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    project = keys.project_of(session, credentials.credentials)
    if project is None:
        raise ApiError(401, "invalid API key", code="invalid_api_key")
    return project


def current_project(session: SessionDep, credentials: BearerKey) -> str:
    return bearer_project(session, credentials)


def key_project(request: Request, credentials: BearerKey) -> str:
    """The Bearer key's project, checked in a short session of its own: an upload's route checks it
    before reading the body, which may stream for minutes without holding a connection."""
    with request.app.state.sessions() as session:
        return bearer_project(session, credentials)


def caller(request: Request, credentials: BearerKey) -> str | None:
    """For inference: the key's project; None when the server runs standalone (no database, no keys).

    The key is checked in a short session of its own: a streamed answer must not hold a transaction."""
    sessions = getattr(request.app.state, "sessions", None)
    if sessions is None:
        return None
    with sessions() as session:
        return bearer_project(session, credentials)


CurrentProject = Annotated[str, Depends(current_project)]
KeyProject = Annotated[str, Depends(key_project)]
Caller = Annotated[str | None, Depends(caller)]
