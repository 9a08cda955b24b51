"""`POST /api/runs/{id}/audit`: the request, the audit's status, and its rows."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AuditRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_tokens: int | None = Field(
        None, ge=64, le=65536, description="Tokens per forward pass (default 8192)."
    )


class AuditStatus(BaseModel):
    id: str
    object: Literal["run.audit"] = "run.audit"
    job: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float
    message: str
    error: dict[str, Any] | None
    summary: dict[str, Any] | None = Field(
        description="Once succeeded: rows, flag counts, the cuts used, skipped lines, rows/s."
    )
    created_at: int
    updated_at: int


class AuditRow(BaseModel):
    """One audited row: losses (mean nats per supervised token) under the tuned and the base model, flags."""

    split: str
    source: str
    line: int
    tokens: int
    tuned_loss: float
    base_loss: float
    loss_drop: float
    label_prob: float
    top_prob: float
    agreement: float
    contradiction: float
    loss_z: float
    prompt: str
    answer: str
    predicted: str
    flags: list[str]
    reasons: list[str]


class AuditRows(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditRow]
    has_more: bool = False
