"""`/api/datasets`: named, versioned data sets and their validation reports.

Every upload becomes a version of the dataset named after its file (`orders.jsonl` ->
`orders`); a new version only when the content changed. Registering an uploaded file
under another name is `POST /api/datasets/{name}/versions`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from tunery.service.api.deps import DB_INT_MAX, CurrentProject, SessionDep
from tunery.service.domain import datasets
from tunery.service.schemas.common import ListPage
from tunery.service.schemas.datasets import (
    DatasetPublic,
    DatasetVersionCreate,
    DatasetVersionPublic,
    DatasetVersionReport,
)

router = APIRouter(prefix="/api/datasets", tags=["datasets"])


@router.get("", response_model=ListPage[DatasetPublic])
def list_datasets(session: SessionDep, project: CurrentProject) -> ListPage[DatasetPublic]:
    items = [
        DatasetPublic(name=d.name, latest=DatasetVersionPublic.of(d.latest), versions=d.versions)
        for d in datasets.list_datasets(session, project)
    ]
    return ListPage.of(items, key="name")


@router.get("/{name}/versions", response_model=ListPage[DatasetVersionPublic])
def list_versions(name: str, session: SessionDep, project: CurrentProject) -> ListPage[DatasetVersionPublic]:
    versions = datasets.list_versions(session, project, name)
    return ListPage.of([DatasetVersionPublic.of(v) for v in versions], key="version")


@router.post("/{name}/versions", response_model=DatasetVersionPublic)
def add_version(
    name: str, body: DatasetVersionCreate, session: SessionDep, project: CurrentProject
) -> DatasetVersionPublic:
    return DatasetVersionPublic.of(datasets.register_file(session, project, name, body.file_id))


@router.get("/{name}/versions/{version}", response_model=DatasetVersionReport)
def get_version(
    name: str,
    version: Annotated[int, Path(ge=1, le=DB_INT_MAX)],
    session: SessionDep,
    project: CurrentProject,
) -> DatasetVersionReport:
    """A version with its validation report."""
    return DatasetVersionReport.of(datasets.get_version(session, project, name, version))
