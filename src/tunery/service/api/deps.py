"""Dependencies as `Annotated` aliases, so handlers read `def get(job_id, session: SessionDep, project: CurrentProject)`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Protocol

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from tunery.service.errors import ApiError
from tunery.service.keys import project_of
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


class Dispatcher(Protocol):
    """Who runs jobs: `tunery.jobs.local.LocalWorker` or `tunery.jobs.celery_app.Redispatcher`."""

    def start(self) -> None: ...
    def submit(self, job_id: str) -> None: ...
    def stop(self) -> None: ...


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


SessionDep = Annotated[Session, Depends(get_session)]
# Numbers a caller sends stay within a database integer: a huge one is a 400, never an overflow (500).
DB_INT_MAX = 2**31 - 1
PageLimit = Annotated[int, Query(ge=1, le=1000, description="Items per page (1 to 1000).")]
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
