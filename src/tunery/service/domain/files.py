"""Uploaded files: checked by the data checker (a file with row errors is refused whole), stored, deleted.

    file = store_upload(session, project, settings, handle, "orders.jsonl", "fine-tune")

Each stored upload also becomes a version of the dataset named after it (`datasets.add_version`).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import IO, Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunery.errors import TuneryError
from tunery.jobs.lifecycle import ACTIVE
from tunery.service.domain import datasets
from tunery.service.domain.lookups import fetch_page, get_file
from tunery.service.errors import ApiError, refusal
from tunery.settings import Settings
from tunery.store.tables import File, Job, new_id

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class InvalidFileError(TuneryError):
    """An upload nothing can be trained on: an unknown type, unreadable, or rows with errors."""

    code = "invalid_file"


MAX_FILENAME = 255  # what file systems allow; longer names only break tables and logs


def store_upload(
    session: Session, project: str, settings: Settings, source: BinaryIO, filename: str | None, purpose: str
) -> File:
    """Check and keep an upload (purpose `fine-tune`); 400 with the data checker's report if any row is bad."""
    if purpose != "fine-tune":
        raise ApiError(400, f"purpose '{purpose}' is not supported; use 'fine-tune'", param="purpose")
    if filename is not None and len(filename) > MAX_FILENAME:
        raise ApiError(
            400, f"the file name is {len(filename)} characters; at most {MAX_FILENAME} are accepted: rename the file",
            code="filename_too_long", param="file",
        )  # fmt: skip
    filename = display_name(filename)
    suffix = Path(filename).suffix.lower() or ".jsonl"
    if suffix not in SUFFIXES:
        message = f"{filename}: unsupported file type '{suffix}'; use one of {', '.join(SUFFIXES)}"
        raise refusal(InvalidFileError(message), param="file")
    staging = settings.artifacts / "tmp"
    staging.mkdir(parents=True, exist_ok=True)
    # Staged under a random name: the client's file name never reaches the file system.
    with tempfile.NamedTemporaryFile(dir=staging, suffix=suffix, delete=False) as handle:
        temporary = Path(handle.name)
        complete = copy_at_most(source, handle, settings.max_upload_bytes)
    try:
        if not complete:
            raise ApiError(
                413, f"{filename} is over the upload limit of {settings.max_upload_bytes} bytes",
                code="file_too_large", param="file",
            )  # fmt: skip
        return _keep(session, project, settings, temporary, filename, purpose)
    finally:
        temporary.unlink(missing_ok=True)


def _keep(
    session: Session, project: str, settings: Settings, staged: Path, filename: str, purpose: str
) -> File:
    """Check the staged upload, record it and its dataset version, then move it into place."""
    report = check_upload(staged, filename)
    if report["rows"] > settings.max_upload_rows:
        raise ApiError(
            413, f"{filename} has {report['rows']} rows; the upload limit is {settings.max_upload_rows}",
            code="too_many_rows", param="file",
        )  # fmt: skip
    file_id = new_id("file")
    stored = settings.artifacts / "files" / f"{file_id}{staged.suffix}"
    stored.parent.mkdir(parents=True, exist_ok=True)
    record = File(
        id=file_id, project=project, filename=filename, purpose=purpose, bytes=staged.stat().st_size,
        path=str(stored.relative_to(settings.artifacts)), content_hash=report["content_hash"],
        format=report["format"], rows=report["valid_rows"], report=report,
    )  # fmt: skip
    session.add(record)
    session.flush()
    datasets.add_version(session, project, datasets.dataset_name(filename), record)
    staged.replace(stored)
    session.commit()
    return record


def display_name(raw: str | None) -> str:
    """The client's file name, kept for display only: its last part after '/' or '\\', no control characters."""
    name = re.split(r"[/\\]", raw or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name if name not in ("", ".", "..") else "upload.jsonl"


def copy_at_most(source: BinaryIO, target: IO[bytes], limit: int) -> bool:
    """Copy until `limit` bytes; False (and stop reading) when the source holds more."""
    written = 0
    while chunk := source.read(1 << 20):
        written += len(chunk)
        if written > limit:
            return False
        target.write(chunk)
    return True


def check_upload(path: Path, filename: str) -> dict[str, Any]:
    """The data checker's report as a dict; raises a 400 `ApiError` carrying it when rows are bad."""
    from tunery.data import DataFileError, check_data, load_examples
    from tunery.data.preference import is_preference_file

    try:
        if is_preference_file(path):  # chosen/rejected pairs or KTO rows: for task preference (method dpo)
            return check_preference_upload(path, filename)
        loaded = load_examples(path)
    except DataFileError as err:
        reason = str(err).replace(str(path), filename)
        raise refusal(InvalidFileError(f"invalid file: {reason}"), param="file") from None
    loaded.path = filename
    report = check_data(loaded).to_dict()
    if not report["ok"] or report["valid_rows"] == 0:
        errors = report["errors"]
        shown = "; ".join(f"line {e['line']}: {e['reason']}" for e in errors[:5]) or "no rows"
        message = f"invalid file: {len(errors)} of {report['rows']} rows have errors ({shown})"
        raise refusal(InvalidFileError(message), param="file", report=report)
    return report


def check_preference_upload(path: Path, filename: str) -> dict[str, Any]:
    """A preference file's report (data/preference_check.py); a 400 naming each bad row's line and field."""
    from tunery.data.preference import load_preferences
    from tunery.data.preference_check import check_preferences

    loaded = load_preferences(path)
    loaded.path = filename
    report = check_preferences(loaded).to_dict()
    # The keys a dataset version reads (data/versions.py), and the format the job checks for.
    report |= {"format": f"preference/{report['format']}", "near_duplicates": []}
    if not report["ok"] or report["valid_rows"] == 0:
        errors = report["errors"]
        shown = "; ".join(
            f"line {e['line']}" + (f", field '{e['field']}'" if e["field"] else "") + f": {e['reason']}"
            for e in errors[:5]
        )
        message = f"invalid file: {len(errors)} of {report['rows']} rows have errors ({shown or 'no rows'})"
        raise refusal(InvalidFileError(message), param="file", report=report)
    return report


def list_files(
    session: Session, project: str, purpose: str | None = None, after: str | None = None, limit: int = 100
) -> tuple[list[File], bool]:
    """Newest first; `after` is the last id of the previous page. Returns (files, whether more follow)."""
    query = select(File).where(File.project == project).order_by(File.seq.desc())
    if purpose:
        query = query.where(File.purpose == purpose)
    if after:
        query = query.where(File.seq < get_file(session, project, after).seq)
    return fetch_page(session, query, limit)


def delete_file(session: Session, project: str, settings: Settings, file_id: str) -> None:
    """Remove an upload and its stored copy; 409 while an unfinished job trains on it."""
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
