"""A project's rows by id, and pages of a query: another project's rows are 404, exactly like missing ones."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from tunery.service.errors import not_found
from tunery.store.tables import File, Job, Model


def get_owned(session: Session, table: Any, object_id: str, project: str, kind: str) -> Any:
    """The project's row of `table` with this id; `kind` names it in the 404 (`file`, `model`, ...)."""
    found = session.scalar(select(table).where(table.id == object_id, table.project == project))
    if found is None:
        raise not_found(kind, object_id)
    return found


def get_file(session: Session, project: str, file_id: str) -> File:
    return get_owned(session, File, file_id, project, "file")


def get_job(session: Session, project: str, job_id: str) -> Job:
    return get_owned(session, Job, job_id, project, "fine_tuning.job")


def get_model(session: Session, project: str, model_id: str) -> Model:
    return get_owned(session, Model, model_id, project, "model")


def fetch_page(session: Session, query: Select, limit: int) -> tuple[list, bool]:
    """Up to `limit` rows of `query`, and whether more follow (one extra row is read to tell)."""
    rows = session.scalars(query.limit(limit + 1)).all()
    return list(rows[:limit]), len(rows) > limit
