from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from tunery.store.tables import File


class FilePublic(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None
    # tunery: what the data checker found
    format: str
    rows: int
    content_hash: str

    @classmethod
    def of(cls, file: File) -> FilePublic:
        return cls(
            id=file.id, bytes=file.bytes, created_at=file.created_at, filename=file.filename, purpose=file.purpose,
            format=file.format, rows=file.rows, content_hash=file.content_hash,
        )  # fmt: skip


class FileReport(BaseModel):
    """The data checker's report of an uploaded file (see `tunery data check`)."""

    file_id: str
    report: dict[str, Any]
