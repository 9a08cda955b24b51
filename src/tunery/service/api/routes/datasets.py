"""`/api/datasets`: named, versioned data sets and their validation reports.

Every upload becomes a version of the dataset named after its file (`orders.jsonl` ->
`orders`); a new version only when the content changed. Registering an uploaded file
under another name is `POST /api/datasets/{name}/versions`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import func, select

from tunery.service.api.deps import DB_INT_MAX, CurrentProject, SessionDep
from tunery.service.api.routes.files import add_dataset_version, get_file
from tunery.service.errors import ApiError, not_found
from tunery.service.schemas.common import ListPage
from tunery.service.schemas.datasets import (
    DatasetPublic,
    DatasetVersionCreate,
    DatasetVersionPublic,
    DatasetVersionReport,
)
from tunery.store.tables import DatasetVersion

router = APIRouter(prefix="/api/datasets", tags=["datasets"])


@router.get("", response_model=ListPage[DatasetPublic])
def list_datasets(session: SessionDep, project: CurrentProject) -> ListPage[DatasetPublic]:
    names = session.execute(
        select(DatasetVersion.name, func.count())
        .where(DatasetVersion.project == project)
        .group_by(DatasetVersion.name)
        .order_by(DatasetVersion.name)
    ).all()
    items = [
        DatasetPublic(
            name=name, latest=DatasetVersionPublic.of(_versions(session, project, name)[-1]), versions=n
        )
        for name, n in names
    ]
    return ListPage.of(items, key="name")


@router.get("/{name}/versions", response_model=ListPage[DatasetVersionPublic])
def list_versions(name: str, session: SessionDep, project: CurrentProject) -> ListPage[DatasetVersionPublic]:
    versions = _versions(session, project, name)
    if not versions:
        raise not_found("dataset", name)
    return ListPage.of([DatasetVersionPublic.of(v) for v in versions], key="version")


@router.post("/{name}/versions", response_model=DatasetVersionPublic)
def add_version(
    name: str, body: DatasetVersionCreate, session: SessionDep, project: CurrentProject
) -> DatasetVersionPublic:
    from tunery.data.registry import NAME_PATTERN

    if not NAME_PATTERN.match(name):
        raise ApiError(400, f"'{name}' is not a valid dataset name: letters, digits, '.', '_' and '-'")
    version = add_dataset_version(session, project, name, get_file(session, project, body.file_id))
    session.commit()
    return DatasetVersionPublic.of(version)


@router.get("/{name}/versions/{version}", response_model=DatasetVersionReport)
def get_version(
    name: str,
    version: Annotated[int, Path(ge=1, le=DB_INT_MAX)],
    session: SessionDep,
    project: CurrentProject,
) -> DatasetVersionReport:
    """A version with its validation report."""
    found = session.scalar(
        select(DatasetVersion).where(
            DatasetVersion.project == project, DatasetVersion.name == name, DatasetVersion.version == version
        )
    )
    if found is None:
        raise not_found("dataset version", f"{name}@{version}")
    return DatasetVersionReport(**DatasetVersionPublic.of(found).model_dump(), report=found.report)


def _versions(session, project: str, name: str) -> list[DatasetVersion]:
    query = select(DatasetVersion).where(DatasetVersion.project == project, DatasetVersion.name == name)
    return list(session.scalars(query.order_by(DatasetVersion.version)).all())
