"""An upload's multipart body, read only once its sender is known: the one way both upload routes
(`POST /v1/files`, the dashboard's `/ui/files`) read a file.

    form = await read_upload(request)        # after the route's dependencies checked the key or session
    stored = await in_new_session(request, files.store_upload, project, settings, form.file, ...)

A route that declares `UploadFile` or `Form` parameters has FastAPI parse (spool to disk) the whole
body before any dependency runs, so a key check there comes after the disk has taken it all. These
routes declare none: their dependencies read headers only, and the body is read here afterwards,
counted on the way in by `tunery.service.limits.BodyLimit`. The routes do their database work in a
session opened after the body has arrived: an upload may stream for minutes and must not hold a
connection meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from tunery.service.errors import ApiError

MAX_FIELDS = 8  # purpose, csrf_token and a few a client may add; the file is the one file
T = TypeVar("T")
# How the routes document the body they read themselves (FastAPI cannot see it).
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "purpose": {"type": "string", "description": "fine-tune"},
                    },
                }
            }
        },
    }
}


@dataclass
class Upload:
    form: FormData
    file: BinaryIO
    filename: str | None

    def text(self, field: str) -> str | None:
        value = self.form.get(field)
        return value if isinstance(value, str) else None

    def required(self, field: str) -> str:
        value = self.text(field)
        if value is None:
            raise ApiError(
                400, f"invalid request: {field}: Field required", code="invalid_request", param=field
            )
        return value


async def read_upload(request: Request) -> Upload:
    """The form with its one file (field `file`); 400 naming `file` when there is none."""
    form = await request.form(max_files=1, max_fields=MAX_FIELDS)
    file = form.get("file")
    if not isinstance(file, UploadFile):
        await form.close()
        raise ApiError(
            400, "invalid request: file: send the file as the multipart/form-data field 'file'",
            code="invalid_request", param="file",
        )  # fmt: skip
    return Upload(form, file.file, file.filename)


async def in_new_session(request: Request, work: Callable[..., T], *args: Any) -> T:
    """`work(session, *args)` in a worker thread, in a session of its own, opened now."""

    def run() -> T:
        with request.app.state.sessions() as session:
            return work(session, *args)

    return await run_in_threadpool(run)
