"""`/v1/files`: uploads are checked by the data checker; a file with row errors is refused whole."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, UploadFile
from fastapi.responses import FileResponse
from sqlalchemy import select

from tunery.jobs.lifecycle import ACTIVE
from tunery.service.api.deps import CurrentProject, PageLimit, SessionDep, SettingsDep, fetch_page, get_owned
from tunery.service.errors import ApiError
from tunery.service.schemas.common import Deleted, ListPage
from tunery.service.schemas.files import FilePublic, FileReport
from tunery.store.tables import DatasetVersion, File, Job, new_id

router = APIRouter(prefix="/v1/files", tags=["files"])
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@router.post("", response_model=FilePublic)
def upload_file(
    file: UploadFile,
    purpose: Annotated[str, Form()],
    session: SessionDep,
    project: CurrentProject,
    settings: SettingsDep,
) -> FilePublic:
    """Upload training data (purpose `fine-tune`); 400 with the data checker's report if any row is bad."""
    if purpose != "fine-tune":
        raise ApiError(400, f"purpose '{purpose}' is not supported; use 'fine-tune'", param="purpose")
    filename = display_name(file.filename)
    suffix = Path(filename).suffix.lower() or ".jsonl"
    if suffix not in SUFFIXES:
        raise ApiError(
            400,
            f"{filename}: unsupported file type '{suffix}'; use one of {', '.join(SUFFIXES)}",
            code="invalid_file",
            param="file",
        )
    staging = settings.artifacts / "tmp"
    staging.mkdir(parents=True, exist_ok=True)
    # Staged under a random name: the client's file name never reaches the file system.
    with tempfile.NamedTemporaryFile(dir=staging, suffix=suffix, delete=False) as handle:
        temporary = Path(handle.name)
        complete = copy_at_most(file.file, handle, settings.max_upload_bytes)
    try:
        if not complete:
            raise ApiError(
                413, f"{filename} is over the upload limit of {settings.max_upload_bytes} bytes",
                code="file_too_large", param="file",
            )  # fmt: skip
        report = check_upload(temporary, filename)
        if report["rows"] > settings.max_upload_rows:
            raise ApiError(
                413, f"{filename} has {report['rows']} rows; the upload limit is {settings.max_upload_rows}",
                code="too_many_rows", param="file",
            )  # fmt: skip
        file_id = new_id("file")
        stored = settings.artifacts / "files" / f"{file_id}{suffix}"
        stored.parent.mkdir(parents=True, exist_ok=True)
        record = File(
            id=file_id, project=project, filename=filename, purpose=purpose, bytes=temporary.stat().st_size,
            path=str(stored.relative_to(settings.artifacts)), content_hash=report["content_hash"],
            format=report["format"], rows=report["valid_rows"], report=report,
        )  # fmt: skip
        session.add(record)
        session.flush()
        add_dataset_version(session, project, dataset_name(filename), record)
        temporary.replace(stored)
        session.commit()
    finally:
        temporary.unlink(missing_ok=True)
    return FilePublic.of(record)


def display_name(raw: str | None) -> str:
    """The client's file name, kept for display only: its last part after '/' or '\\', no control characters."""
    name = re.split(r"[/\\]", raw or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name if name not in ("", ".", "..") else "upload.jsonl"


def copy_at_most(source, target, limit: int) -> bool:
    """Copy until `limit` bytes; False (and stop reading) when the source holds more."""
    written = 0
    while chunk := source.read(1 << 20):
        written += len(chunk)
        if written > limit:
            return False
        target.write(chunk)
    return True


def check_upload(path: Path, filename: str) -> dict:
    """The data checker's report as a dict; raises a 400 `ApiError` carrying it when rows are bad."""
    from tunery.data import DataFileError, check_data, load_examples

    try:
        loaded = load_examples(path)
    except DataFileError as err:
        reason = str(err).replace(str(path), filename)
        raise ApiError(400, f"invalid file: {reason}", code="invalid_file", param="file") from None
    loaded.path = filename
    report = check_data(loaded).to_dict()
    if not report["ok"] or report["valid_rows"] == 0:
        errors = report["errors"]
        shown = "; ".join(f"line {e['line']}: {e['reason']}" for e in errors[:5]) or "no rows"
        message = f"invalid file: {len(errors)} of {report['rows']} rows have errors ({shown})"
        raise ApiError(400, message, code="invalid_file", param="file", report=report)
    return report


def dataset_name(filename: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(filename).stem).strip("-._") or "dataset"


def add_dataset_version(session, project: str, name: str, file: File) -> DatasetVersion:
    """The next version of dataset `name`, or the latest one if its content is the same."""
    latest = session.scalar(
        select(DatasetVersion)
        .where(DatasetVersion.project == project, DatasetVersion.name == name)
        .order_by(DatasetVersion.version.desc())
    )
    if latest is not None and latest.content_hash == file.content_hash:
        if latest.file_id is None:
            latest.file_id = file.id
        return latest
    version = DatasetVersion(
        project=project, name=name, version=latest.version + 1 if latest else 1,
        parent=latest.version if latest else None, file_id=file.id, content_hash=file.content_hash,
        rows=file.rows, format=file.format, report=file.report,
    )  # fmt: skip
    session.add(version)
    return version


def get_file(session, project: str, file_id: str) -> File:
    return get_owned(session, File, file_id, project, "file")


@router.get("", response_model=ListPage[FilePublic])
def list_files(
    session: SessionDep,
    project: CurrentProject,
    purpose: str | None = None,
    limit: PageLimit = 100,
    after: str | None = None,
) -> ListPage[FilePublic]:
    query = select(File).where(File.project == project).order_by(File.seq.desc())
    if purpose:
        query = query.where(File.purpose == purpose)
    if after:
        query = query.where(File.seq < get_file(session, project, after).seq)
    files, more = fetch_page(session, query, limit)
    return ListPage.of([FilePublic.of(f) for f in files], has_more=more)


@router.get("/{file_id}", response_model=FilePublic)
def retrieve_file(file_id: str, session: SessionDep, project: CurrentProject) -> FilePublic:
    return FilePublic.of(get_file(session, project, file_id))


@router.get("/{file_id}/content")
def file_content(
    file_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> FileResponse:
    file = get_file(session, project, file_id)
    return FileResponse(settings.artifacts / file.path, filename=file.filename)


@router.delete("/{file_id}", response_model=Deleted)
def delete_file(file_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep) -> Deleted:
    file = get_file(session, project, file_id)
    busy = session.scalar(
        select(Job.id).where(
            (Job.training_file == file_id) | (Job.validation_file == file_id), Job.status.in_(ACTIVE)
        )
    )
    if busy:
        raise ApiError(
            409, f"file {file_id} is used by job {busy}, which has not finished", code="file_in_use"
        )
    session.delete(file)
    session.commit()
    (settings.artifacts / file.path).unlink(missing_ok=True)
    return Deleted(id=file_id, object="file")


report_router = APIRouter(prefix="/api/files", tags=["files"])


@report_router.get("/{file_id}/report", response_model=FileReport)
def file_report(file_id: str, session: SessionDep, project: CurrentProject) -> FileReport:
    """The data checker's report of an uploaded file."""
    return FileReport(file_id=file_id, report=get_file(session, project, file_id).report)
