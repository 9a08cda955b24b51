from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tunery.config import DEFAULT_LR, LR_FAMILIES
from tunery.jobs.lifecycle import shown_status, without_server_paths
from tunery.jobs.resources import JobResources
from tunery.service.public import public_config, public_value
from tunery.store.tables import Checkpoint, Event, Job

Status = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
Auto = Literal["auto"]


# Bounds a job can ever run within; the server's own ceilings (settings) come on top in the domain.
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 4096
MAX_LR_MULTIPLIER = 1000.0
Epochs = Annotated[float, Field(gt=0, le=MAX_EPOCHS, allow_inf_nan=False)]
# Names that become part of a model id (ft:base:suffix:job) or a page: no `:`, markup or control characters.
SUFFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A training config key users reach for by another name, so an unknown hyperparameter gets a pointer.
TUNERY_TRAIN_KEYS = (
    "warmup_ratio",
    "weight_decay",
    "max_steps",
    "grad_accum",
    "scheduler",
    "max_grad_norm",
    "seed",
)


class Hyperparameters(BaseModel):
    batch_size: Auto | Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)] | None = Field(
        None, description="train.batch_size; auto (the default): from tokens per step and free memory"
    )
    learning_rate_multiplier: (
        Auto | Annotated[float, Field(gt=0, le=MAX_LR_MULTIPLIER, allow_inf_nan=False)] | None
    ) = Field(
        None,
        description=f"train.lr = the method family's default learning rate (LoRA {DEFAULT_LR:g}; "
        + ", ".join(f"{name} {values[0]:g}" for name, values in LR_FAMILIES.items() if name != "lora")
        + ") × this; auto (the default): a learning-rate range test picks it (train.lr: auto)",
    )
    n_epochs: Auto | Annotated[int, Field(ge=1, le=MAX_EPOCHS)] | Epochs | None = Field(
        None,
        description="train.epochs (tunery allows fractions); auto (the default): from the rows and "
        "supervised tokens, with early stopping",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, given: Any) -> Any:
        """OpenAI's three keys only: an unknown one is named, with the nearest valid key."""
        unknown = [key for key in given if key not in cls.model_fields] if isinstance(given, dict) else []
        if unknown:
            raise PydanticCustomError(
                "unknown_hyperparameter", "unknown hyperparameter {key}{hint}; valid: " + ", ".join(cls.model_fields),
                {"key": unknown[0], "hint": nearest_key(str(unknown[0]), list(cls.model_fields))},
            )  # fmt: skip
        return given


def nearest_key(key: str, valid: list[str]) -> str:
    """`; did you mean …?` for a mistyped key: one of `valid`, or a `tunery.train` key of that name."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]}?"
    train = difflib.get_close_matches(key, TUNERY_TRAIN_KEYS, n=1, cutoff=0.5)
    if not train:
        train = [name for name in TUNERY_TRAIN_KEYS if name.startswith(key[:4].lower())]
    return f"; did you mean tunery.train.{train[0]}?" if train else ""


class ResolvedHyperparameters(BaseModel):
    """What a job resolved them to, as shown: unbounded, so a row from before a bound still reads."""

    batch_size: Auto | int | None = None
    learning_rate_multiplier: Auto | float | None = None
    n_epochs: Auto | int | float | None = None


class ResolvedMethod(BaseModel):
    type: str = "supervised"
    supervised: dict[str, Any] | None = None
    dpo: dict[str, Any] | None = None


class SupervisedMethod(BaseModel):
    hyperparameters: Hyperparameters | None = None


class DpoHyperparameters(Hyperparameters):
    """OpenAI's DPO hyperparameters: the supervised three and `beta` (tunery.preference.beta)."""

    beta: Auto | Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] | None = Field(
        None, description="preference.beta: strength of the preference"
    )


class DpoMethod(BaseModel):
    """`method.type = "dpo"`: a preference file (input, preferred_output, non_preferred_output)."""

    hyperparameters: DpoHyperparameters | None = None


class Method(BaseModel):
    type: Literal["supervised", "dpo", "reinforcement"] = "supervised"
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: dict[str, Any] | None = None


class Integration(BaseModel):
    """OpenAI's `integrations` entry; tunery maps it to train.report_to (docs/tracking.md)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["wandb", "mlflow", "tensorboard"]
    wandb: dict[str, Any] | None = Field(None, description="project, entity, name, tags")
    mlflow: dict[str, Any] | None = Field(
        None, description="tracking_uri (http/https), experiment, register, registered_model"
    )


class JobCreate(BaseModel):
    """OpenAI's job request; tunery's own options go in `tunery`, a partial training config.

    `tunery` takes any section and key of the training config (`tunery config` / docs),
    e.g. `{"method": "dora", "lora": {"r": 16}, "train": {"max_steps": 200}}`; `model`,
    `data.train`, `data.validation`, `output_dir` and `run_name` come from the job itself.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=1000)
    training_file: str = Field(max_length=100)
    validation_file: str | None = Field(None, max_length=100)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(None, max_length=64, description="Letters, digits, '.', '_' and '-'.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=16)
    integrations: list[Integration] | None = None
    tunery: dict[str, Any] | None = Field(None, description="tunery's training config keys (extension).")
    resources: JobResources | None = Field(
        None, description="tunery: GPUs and the worker queue the job needs (Celery workers; docs/deploy.md)."
    )

    @field_validator("model")
    @classmethod
    def _printable_model(cls, model: str) -> str:
        if not model.strip():
            raise ValueError(
                "the model is empty: name a base model (an alias such as smollm2-135m-instruct or a path)"
            )
        if CONTROL.search(model):
            raise ValueError("the model name holds a control character (such as NUL); send its plain name")
        return model

    @field_validator("suffix")
    @classmethod
    def _plain_suffix(cls, suffix: str | None) -> str | None:
        if suffix is not None and not SUFFIX.fullmatch(suffix):
            raise ValueError(
                "a suffix takes letters, digits, '.', '_' and '-' only (it becomes part of the model id "
                "ft:<base>:<suffix>:<job>, so no ':', spaces or markup)"
            )
        return suffix

    @field_validator("metadata")
    @classmethod
    def _short_metadata_keys(cls, metadata: dict[str, str] | None) -> dict[str, str] | None:
        if metadata and any(len(key) > 64 or CONTROL.search(key + value) for key, value in metadata.items()):
            raise ValueError(
                "metadata keys take up to 64 characters, and no key or value a control character"
            )
        return metadata


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


def shown_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """A failed job's error without server paths (rows recorded before the runner shortened them too)."""
    return {**error, "message": without_server_paths(str(error.get("message", "")))} if error else None


class JobPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: ResolvedHyperparameters
    method: ResolvedMethod
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
            id=job.id, created_at=job.created_at, error=shown_error(job.error), fine_tuned_model=job.fine_tuned_model,
            finished_at=job.finished_at, hyperparameters=job.hyperparameters, method=job.method, model=job.model,
            organization_id=job.project, seed=job.seed, status=shown_status(job), trained_tokens=job.trained_tokens,
            training_file=job.training_file, validation_file=job.validation_file, metadata=job.metadata_,
            tunery=public_config(job.config, job.model, job.training_file, job.validation_file),
            resources=job.resources or {}, worker=job.worker,
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
            id=event.id, created_at=event.created_at, level=event.level, message=without_server_paths(event.message),
            type=event.type, data=public_value(event.data),
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
