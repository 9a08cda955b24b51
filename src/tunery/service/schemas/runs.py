from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class RunPublic(BaseModel):
    """A job's training run: its record, and its metric series by name."""

    job_id: str
    status: str
    artifact: str
    record: dict[str, Any]
    series: dict[str, list[list[float]]] = Field(description="name -> [[step, value], ...]")
    attempts: int
    pid: int | None


class Evaluation(BaseModel):
    job_id: str
    validation: list[dict[str, Any]] = Field(description="The validation losses logged during training.")
    metrics: dict[str, Any] = Field(
        description="Final metrics (train/val loss, best step, classification scores)."
    )


class MethodPublic(BaseModel):
    name: str
    summary: str
    mergeable: bool
