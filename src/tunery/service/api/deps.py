"""Dependencies as `Annotated` aliases, so handlers read `def get(job_id, session: SessionDep, project: CurrentProject)`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from tunery.service.errors import ApiError
from tunery.service.keys import project_of
from tunery.service.settings import Settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


class Dispatcher(Protocol):
    """Who runs jobs: `tunery.jobs.local.LocalWorker` or `tunery.jobs.celery_app.Redispatcher`."""

    def start(self) -> None: ...
    def submit(self, job_id: str) -> None: ...
    def stop(self) -> None: ...


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `tunery keys create --project P`.")


def current_project(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    if credentials is None:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    project = project_of(session, credentials.credentials)
    if project is None:
        raise ApiError(401, "invalid API key", code="invalid_api_key")
    return project


CurrentProject = Annotated[str, Depends(current_project)]


def get_owned(session, table, object_id: str, project: str, kind: str):
    """The project's row with this id; another project's rows are 404, exactly like missing ones."""
    from sqlalchemy import select

    from tunery.service.errors import not_found

    found = session.scalar(select(table).where(table.id == object_id, table.project == project))
    if found is None:
        raise not_found(kind, object_id)
    return found


def fetch_page(session, query, limit: int) -> tuple[list, bool]:
    """Up to `limit` rows of `query`, and whether more follow (one extra row is read to tell)."""
    rows = session.scalars(query.limit(limit + 1)).all()
    return list(rows[:limit]), len(rows) > limit
