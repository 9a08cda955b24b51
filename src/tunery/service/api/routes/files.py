"""`/v1/files`: uploads are checked by the data checker; a file with row errors is refused whole."""

from __future__ import annotations

from typing import BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from tunery.service.api.deps import CurrentProject, KeyProject, PageLimit, SessionDep, SettingsDep
from tunery.service.api.uploads import UPLOAD_BODY, in_new_session, read_upload
from tunery.service.domain import files
from tunery.service.domain.lookups import get_file
from tunery.service.schemas.common import Deleted, ListPage
from tunery.service.schemas.files import FilePublic, FileReport
from tunery.settings import Settings

router = APIRouter(prefix="/v1/files", tags=["files"])
BYTES_TYPE = "application/octet-stream"
BYTES = {
    "description": "The file's bytes",
    "content": {BYTES_TYPE: {"schema": {"type": "string", "format": "binary"}}},
}


@router.post("", response_model=FilePublic, openapi_extra=UPLOAD_BODY)
async def upload_file(request: Request, project: KeyProject, settings: SettingsDep) -> FilePublic:
    """Upload training data (purpose `fine-tune`); 400 with the data checker's report if any row is bad.

    The key is checked before the body is read (`tunery.service.api.uploads`)."""
    upload = await read_upload(request)
    try:
        purpose = upload.required("purpose")
        return await in_new_session(
            request, stored_file, project, settings, upload.file, upload.filename, purpose
        )
    finally:
        await upload.form.close()


def stored_file(
    session: Session, project: str, settings: Settings, source: BinaryIO, filename: str | None, purpose: str
) -> FilePublic:
    return FilePublic.of(files.store_upload(session, project, settings, source, filename, purpose))


@router.get("", response_model=ListPage[FilePublic])
def list_files(
    session: SessionDep,
    project: CurrentProject,
    purpose: str | None = None,
    limit: PageLimit = 100,
    after: str | None = None,
) -> ListPage[FilePublic]:
    found, more = files.list_files(session, project, purpose, after, limit)
    return ListPage.of([FilePublic.of(f) for f in found], has_more=more)


@router.get("/{file_id}", response_model=FilePublic)
def retrieve_file(file_id: str, session: SessionDep, project: CurrentProject) -> FilePublic:
    return FilePublic.of(get_file(session, project, file_id))


@router.get("/{file_id}/content", response_class=FileResponse, responses={200: BYTES})
def file_content(
    file_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> FileResponse:
    """The file as uploaded (bytes, as OpenAI answers it)."""
    file = get_file(session, project, file_id)
    return FileResponse(settings.artifacts / file.path, media_type=BYTES_TYPE, filename=file.filename)


@router.delete("/{file_id}", response_model=Deleted)
def delete_file(file_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep) -> Deleted:
    files.delete_file(session, project, settings, file_id)
    return Deleted(id=file_id, object="file")


report_router = APIRouter(prefix="/api/files", tags=["files"])


@report_router.get("/{file_id}/report", response_model=FileReport)
def file_report(file_id: str, session: SessionDep, project: CurrentProject) -> FileReport:
    """The data checker's report of an uploaded file."""
    return FileReport(file_id=file_id, report=get_file(session, project, file_id).report)
