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


class PreviewTokenPublic(BaseModel):
    id: int
    text: str = Field(description="What the token adds to the decoded row.")
    trained: bool = Field(description="The token carries loss: training teaches the model to predict it.")


class PreviewRowPublic(BaseModel):
    line: int = Field(description="The row's line in the dataset file.")
    sequence: int = Field(
        description="The forward pass of epoch 0 the row is in; rows of a packed pass share it."
    )
    tokens: list[PreviewTokenPublic]
    tokens_before_truncation: int
    truncated: bool
    trained_tokens: int


class TemplateIssuePublic(BaseModel):
    """An assistant turn whose inference prompt or trained span does not match training."""

    line: int
    turn: int = Field(description="Index of the assistant message in the row's messages.")
    kind: str = Field(description="prompt: not a token prefix; end: no end-of-turn token at the end.")
    position: int = Field(
        description="Token position of the first difference (end: of the last trained token)."
    )
    expected: str | None
    found: str | None
    expected_id: int | None
    found_id: int | None
    prompt_text: str
    training_text: str
    message: str


class DatasetPreview(BaseModel):
    """Rows of a dataset version as training sees them, in the order epoch 0 trains them."""

    name: str
    version: int
    model: str
    chatml_fallback: bool = Field(description="The model ships no chat template; training uses ChatML.")
    max_length: int
    train_on: str
    batching: str = Field(description="packed or grouped, as a job with this model would train.")
    batch_size: int
    batch_size_auto: bool = Field(description="train.batch_size is auto: training settles it on its device.")
    max_batch_tokens: int | None
    seed: int
    train_rows: int = Field(description="Rows training keeps after the validation hold-out.")
    rows: list[PreviewRowPublic]
    dropped_lines: list[int]
    truncated_lines: list[int]
    template_issues: list[TemplateIssuePublic]

    @classmethod
    def of(cls, name: str, version: int, preview: Any) -> DatasetPreview:
        return cls(name=name, version=version, **preview.to_dict())
