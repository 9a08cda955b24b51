from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tunery.store.tables import DatasetVersionRow


class DatasetVersionCreate(BaseModel):
    file_id: str = Field(description="An uploaded file (purpose fine-tune) to register as the next version.")


class DatasetVersionPublic(BaseModel):
    name: str
    version: int
    parent: int | None
    file_id: str | None
    content_hash: str
    rows: int
    format: str
    created_at: int

    @classmethod
    def of(cls, version: DatasetVersionRow) -> DatasetVersionPublic:
        return cls(
            name=version.name, version=version.version, parent=version.parent, file_id=version.file_id,
            content_hash=version.content_hash, rows=version.rows, format=version.format, created_at=version.created_at,
        )  # fmt: skip


class DatasetVersionReport(DatasetVersionPublic):
    report: dict[str, Any]

    @classmethod
    def of(cls, version: DatasetVersionRow) -> DatasetVersionReport:
        return cls(**DatasetVersionPublic.of(version).model_dump(), report=version.report)


class DatasetPublic(BaseModel):
    name: str
    latest: DatasetVersionPublic
    versions: int
