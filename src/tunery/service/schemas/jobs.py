from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunery.config import DEFAULT_LR
from tunery.jobs.resources import JobResources
from tunery.store.tables import Checkpoint, Event, Job

Status = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    batch_size: Auto | int | None = Field(None, description="train.batch_size")
    learning_rate_multiplier: Auto | float | None = Field(
        None, description=f"train.lr = {DEFAULT_LR:g} × this"
    )
    n_epochs: Auto | int | float | None = Field(None, description="train.epochs (tunery allows fractions)")


class SupervisedMethod(BaseModel):
    hyperparameters: Hyperparameters | None = None


class Method(BaseModel):
    type: Literal["supervised", "dpo", "reinforcement"] = "supervised"
    supervised: SupervisedMethod | None = None
    dpo: dict[str, Any] | None = None
    reinforcement: dict[str, Any] | None = None


class JobCreate(BaseModel):
    """OpenAI's job request; tunery's own options go in `tunery`, a partial training config.

    `tunery` takes any section and key of the training config (`tunery config` / docs),
    e.g. `{"method": "dora", "lora": {"r": 16}, "train": {"max_steps": 200}}`; `model`,
    `data.train`, `data.validation`, `output_dir` and `run_name` come from the job itself.
    """

    model_config = ConfigDict(extra="forbid")

    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(None, max_length=64)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = None
    tunery: dict[str, Any] | None = Field(None, description="tunery's training config keys (extension).")
    resources: JobResources | None = Field(
        None, description="tunery: GPUs and the worker queue the job needs (Celery workers; docs/deploy.md)."
    )


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class JobPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: Hyperparameters
    method: Method
    model: str
    organization_id: str
    result_files: list[str] = []
    seed: int
    status: Status
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    metadata: dict[str, str] | None = None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] | None = None
    tunery: dict[str, Any] = Field(description="The resolved training config the job runs with.")
    resources: JobResources = Field(default_factory=JobResources)
    worker: str | None = Field(None, description="tunery: the Celery worker that runs (or ran) the job.")

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        return cls(
            id=job.id, created_at=job.created_at, error=job.error, fine_tuned_model=job.fine_tuned_model,
            finished_at=job.finished_at, hyperparameters=job.hyperparameters, method=job.method, model=job.model,
            organization_id=job.project, seed=job.seed, status=job.status, trained_tokens=job.trained_tokens,
            training_file=job.training_file, validation_file=job.validation_file, metadata=job.metadata_,
            tunery=job.config, resources=job.resources or {}, worker=job.worker,
        )  # fmt: skip


class EventPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any] | None = None

    @classmethod
    def of(cls, event: Event) -> EventPublic:
        return cls(
            id=event.id, created_at=event.created_at, level=event.level, message=event.message, type=event.type,
            data=event.data,
        )  # fmt: skip


class CheckpointMetrics(BaseModel):
    step: float | None = None
    train_loss: float | None = None
    valid_loss: float | None = None
    full_valid_loss: float | None = None


class CheckpointPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int
    on_disk: bool = Field(
        description="tunery: still kept on disk (train.keep_checkpoints prunes older ones)."
    )

    @classmethod
    def of(cls, checkpoint: Checkpoint, model: str, on_disk: bool) -> CheckpointPublic:
        return cls(
            id=checkpoint.id, created_at=checkpoint.created_at,
            fine_tuned_model_checkpoint=f"{model}:ckpt-step-{checkpoint.step}", fine_tuning_job_id=checkpoint.job_id,
            metrics=checkpoint.metrics, step_number=checkpoint.step, on_disk=on_disk,
        )  # fmt: skip
