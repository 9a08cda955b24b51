"""`/api/datasets`: named, versioned data sets and their validation reports.

Every upload becomes a version of the dataset named after its file (`orders.jsonl` ->
`orders`); a new version only when the content changed. Registering an uploaded file
under another name is `POST /api/datasets/{name}/versions`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from tunery.config import ModelConfig
from tunery.service.api.deps import DB_INT_MAX, CurrentProject, SessionDep, SettingsDep
from tunery.service.domain import datasets
from tunery.service.schemas.common import ListPage
from tunery.service.schemas.datasets import (
    DatasetPreview,
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


@router.get("/{name}/preview", response_model=DatasetPreview)
def preview(
    name: str,
    session: SessionDep,
    project: CurrentProject,
    settings: SettingsDep,
    model: str = ModelConfig.model_fields["name"].default,
    rows: Annotated[int, Query(ge=1, le=datasets.PREVIEW_ROWS_MAX)] = 5,
    version: Annotated[int | None, Query(ge=1, le=DB_INT_MAX)] = None,
    max_length: Annotated[int | None, Query(ge=8, le=DB_INT_MAX)] = None,
) -> DatasetPreview:
    """The mask preview: the first `rows` rows as training sees them, each token with its text, id and
    whether it is trained; the template round-trip check's issues beside them."""
    found, shown = datasets.preview_version(
        session, project, settings, name, model, rows, version, max_length
    )
    return DatasetPreview.of(name, found, shown)
