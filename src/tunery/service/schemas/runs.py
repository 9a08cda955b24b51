from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from tunery.service.public import public_config, public_value

if TYPE_CHECKING:
    from tunery.service.domain.runs import RunFiles


class RunPublic(BaseModel):
    """A job's training run: its record, and its metric series by name."""

    job_id: str
    status: str
    artifact: str
    record: dict[str, Any]
    series: dict[str, list[list[float]]] = Field(description="name -> [[step, value], ...]")
    attempts: int
    pid: int | None

    @classmethod
    def of(cls, run: RunFiles) -> RunPublic:
        return cls(
            job_id=run.job.id, status=run.job.status, artifact=run.job.run_dir, record=public_record(run),
            series=run.series(), attempts=run.job.attempts, pid=run.job.pid,
        )  # fmt: skip


def public_record(run: RunFiles) -> dict[str, Any]:
    """run.json without server paths: its config as the job's, the rest shortened (service/public.py)."""
    job = run.job
    shown = public_value(run.record, keep={job.model})
    if isinstance(run.record.get("config"), dict):
        shown["config"] = public_config(
            run.record["config"], job.model, job.training_file, job.validation_file
        )
    return shown


class Evaluation(BaseModel):
    job_id: str
    validation: list[dict[str, Any]] = Field(description="The validation losses logged during training.")
    metrics: dict[str, Any] = Field(
        description="Final metrics (train/val loss, best step, classification scores)."
    )

    @classmethod
    def of(cls, run: RunFiles) -> Evaluation:
        metrics = public_value(run.record.get("metrics", {}))
        return cls(job_id=run.job.id, validation=run.validation(), metrics=metrics)


class MethodPublic(BaseModel):
    name: str
    summary: str
    mergeable: bool
