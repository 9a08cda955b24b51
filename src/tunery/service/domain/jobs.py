"""Fine-tuning jobs: create one from OpenAI's request (plus tunery's extension), list, cancel, follow.

    job = create_job(session, project, JobCreate(model="smollm2-135m-instruct", training_file=file_id),
                     settings, dispatcher)

A request becomes a resolved training config here, so a bad one is refused before it queues.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunery.config import default_lr  # learning_rate_multiplier scales the method family's default
from tunery.config.registry import METHOD_NAMES
from tunery.jobs.lifecycle import FINISHED, add_event, cancel, model_id, shown_status, transition
from tunery.service.domain import ceilings
from tunery.service.domain.integrations import check_tracking_uris, tracking_settings
from tunery.service.domain.lookups import fetch_page, get_file, get_job
from tunery.service.domain.references import ModelReference, resolve_model, resolve_run, trainable
from tunery.service.errors import ApiError, not_found, refusal
from tunery.service.schemas.jobs import (
    DpoHyperparameters,
    Hyperparameters,
    JobCreate,
    Method,
    ResolvedHyperparameters,
    ResolvedMethod,
    SupervisedMethod,
)
from tunery.settings import Settings
from tunery.store.tables import Checkpoint, Event, File, Job, new_id
from tunery.urlpolicy import UrlPolicy

SET_BY_THE_JOB = ("output_dir", "run_name")


class Dispatcher(Protocol):
    """Who runs jobs: `tunery.jobs.local.LocalWorker` or `tunery.jobs.celery_app.Redispatcher`."""

    def start(self) -> None: ...
    def submit(self, job_id: str) -> None: ...
    def stop(self) -> None: ...


def create_job(
    session: Session, project: str, request: JobCreate, settings: Settings, dispatcher: Dispatcher
) -> Job:
    """Check the request, record the job (validated, then queued) and hand it to the dispatcher."""
    training = get_file(session, project, request.training_file)
    validation = get_file(session, project, request.validation_file) if request.validation_file else None
    hyper = requested_hyperparameters(request)
    job_id = new_id("ftjob")
    model = trainable(resolve_model(session, project, settings, request.model), "model")
    start = start_run(session, project, settings, request.tunery)
    config = job_config(
        request, hyper, job_id, settings.artifacts, training.path, validation.path if validation else None,
        project=project, url_policy=settings.url_policy, model=model, start=start,
    )  # fmt: skip
    if config["model"]["trust_remote_code"] and not settings.allow_trust_remote_code:
        raise ApiError(
            400, "tunery.model.trust_remote_code would run the model repository's code on this server, "
            "which does not allow it (TUNERY_ALLOW_TRUST_REMOTE_CODE)",
            code="trust_remote_code_not_allowed", param="tunery.model.trust_remote_code",
        )  # fmt: skip
    check_ceilings(config, settings, training.rows)
    for file, param in ((training, "training_file"), (validation, "validation_file")):
        if file is not None:
            check_file_task(config["task"], file, param)
    check_device(config["model"]["device"], settings)
    if request.resources and request.resources.gpus > 1:
        check_batch_splits(config, request.resources.gpus)
    job = _job_row(project, request, job_id, config, training, validation)
    session.add(job)
    session.flush()  # the events refer to it
    add_event(session, job, f"Created fine-tuning job: {job_id}", data={"status": "validating_files"})
    add_event(
        session, job, f"Validating training file: {training.id} ({training.rows} rows, {training.format})"
    )
    transition(session, job, "queued", "Files validated, moving job to queued state")
    session.commit()
    dispatcher.submit(job.id)
    return job


def requested_hyperparameters(request: JobCreate) -> Hyperparameters:
    """OpenAI's hyperparameters, from `method.supervised` or the older top-level field; only `supervised`."""
    method = request.method or Method(
        type="supervised", supervised=SupervisedMethod(hyperparameters=request.hyperparameters)
    )
    if method.type == "dpo":  # preference pairs; beta is read by `preference_extension`
        return (method.dpo and method.dpo.hyperparameters) or DpoHyperparameters()
    if method.type != "supervised":
        raise ApiError(
            400, f"method '{method.type}' is not supported yet; use 'supervised' or 'dpo'", param="method"
        )
    return (
        (method.supervised and method.supervised.hyperparameters)
        or request.hyperparameters
        or Hyperparameters()
    )


def _job_row(
    project: str, request: JobCreate, job_id: str, config: dict, training: File, validation: File | None
) -> Job:
    """The job's row, its hyperparameters as the config resolved them ("auto" filled in)."""
    epochs, lr = config["train"]["epochs"], config["train"]["lr"]
    resolved = ResolvedHyperparameters(
        batch_size=config["train"]["batch_size"],
        learning_rate_multiplier="auto" if lr == "auto" else lr / default_lr(config["method"]),
        n_epochs=epochs if epochs == "auto" or not float(epochs).is_integer() else int(epochs),
    )
    method = ResolvedMethod(type="supervised", supervised={"hyperparameters": resolved.model_dump()})
    if request.method and request.method.type == "dpo":
        method = ResolvedMethod(type="dpo", dpo={"hyperparameters": {**resolved.model_dump(),
                                                                     "beta": config["preference"]["beta"]}})  # fmt: skip
    return Job(
        id=job_id, project=project, model=request.model, training_file=training.id,
        validation_file=validation.id if validation else None, suffix=request.suffix, seed=config["train"]["seed"],
        hyperparameters=resolved.model_dump(), method=method.model_dump(), config=config,
        metadata_=request.metadata, status="validating_files", run_dir=f"jobs/{job_id}",
        resources=(request.resources.model_dump() if request.resources else None),
    )  # fmt: skip


def preference_extension(extension: dict, hyper: Hyperparameters) -> None:
    """`method.type = "dpo"`: task preference, loss dpo (or `tunery.preference.loss`), OpenAI's beta."""
    if extension.get("task", "preference") != "preference":
        raise ApiError(
            400, "method 'dpo' trains task 'preference'; leave tunery.task out", param="tunery.task"
        )
    extension["task"] = "preference"
    preference = extension.setdefault("preference", {})
    beta = getattr(hyper, "beta", None)
    if isinstance(preference, dict) and isinstance(beta, int | float):
        preference["beta"] = beta


def check_file_task(task: str, file: File, param: str) -> None:
    """Preference pairs train task preference (method dpo) and nothing else; refused here, not at run time."""
    pairs = str(file.format).startswith("preference/")
    if pairs and task != "preference":
        raise ApiError(400, f"{param} {file.id} holds preference rows ({file.format}); train it with "
                       "method {\"type\": \"dpo\"} or tunery.task \"preference\"",
                       code="invalid_training_file", param=param)  # fmt: skip
    if task == "preference" and not pairs:
        raise ApiError(400, f"{param} {file.id} is a {file.format} file; preference training needs pairs "
                       "(input.messages, preferred_output, non_preferred_output)",
                       code="invalid_training_file", param=param)  # fmt: skip


def start_run(
    session: Session, project: str, settings: Settings, extension: dict[str, Any] | None
) -> ModelReference | None:
    """`tunery.preference.init_from`: one of the project's fine-tuned models, by its id."""
    preference = (extension or {}).get("preference")
    named = preference.get("init_from") if isinstance(preference, dict) else None
    if named is None:
        return None
    if not isinstance(named, str):
        raise ApiError(400, "tunery.preference.init_from is a fine-tuned model id",
                       param="tunery.preference.init_from")  # fmt: skip
    return resolve_run(session, project, settings, named, "tunery.preference.init_from")


def _train_section(extension: dict, hyper: Hyperparameters, seed: int | None) -> dict:
    """`tunery.train` with OpenAI's hyperparameters (and the job's seed) on top."""
    train = dict(extension.pop("train", {}) or {})
    if isinstance(hyper.n_epochs, int | float):
        train["epochs"] = hyper.n_epochs
    if isinstance(hyper.batch_size, int):
        train["batch_size"] = hyper.batch_size
    if isinstance(hyper.learning_rate_multiplier, float | int):
        method = extension.get("method", "lora")  # an unknown one is named by the config's check
        family_lr = default_lr(method if method in METHOD_NAMES else "lora")
        train["lr"] = family_lr * hyper.learning_rate_multiplier
    if seed is not None:
        train["seed"] = seed
    return train


def job_config(
    request: JobCreate,
    hyper: Hyperparameters,
    job_id: str,
    root: Path,
    train: str,
    valid: str | None,
    project: str | None = None,
    url_policy: UrlPolicy | None = None,
    model: ModelReference | None = None,
    start: ModelReference | None = None,
) -> dict[str, Any]:
    """The job's training config: the `tunery` extension, OpenAI's hyperparameters on top, the job's own
    paths; `model` and `start` are the job's model and `preference.init_from` as resolved for its project.
    Its tracking URIs go through `url_policy` (none: public hosts only)."""
    from tunery.config import ConfigError, load_config

    check_tracking_uris(request, url_policy or UrlPolicy())

    extension = copy.deepcopy(request.tunery or {})
    for key in SET_BY_THE_JOB:
        if key in extension:
            raise ApiError(400, f"tunery.{key} is set by the job; leave it out", param=f"tunery.{key}")
    model_options = extension.pop("model", None) or {}
    if not isinstance(model_options, dict) or "name" in model_options:
        raise ApiError(
            400,
            "the model is the job's `model`; tunery.model takes only its other keys",
            param="tunery.model",
        )
    data = extension.pop("data", {}) or {}
    if not isinstance(data, dict) or "train" in data or "validation" in data:
        raise ApiError(400, "the data files are training_file and validation_file", param="tunery.data")
    if start is not None:
        extension["preference"] = {**extension["preference"], "init_from": start.load}
    train_section = _train_section(extension, hyper, request.seed)
    if request.method and request.method.type == "dpo":
        preference_extension(extension, hyper)
    tracking = tracking_settings(request.integrations, job_id, project)  # OpenAI's integrations
    train_section |= {k: tracking.pop(k) for k in ("report_to", "tracking_tags") if k in tracking}
    extension |= tracking
    data["train"] = str(root / train)
    if valid:
        data["validation"] = str(root / valid)
    name = model.load if model is not None else request.model
    raw = {**extension, "model": {**model_options, "name": name}, "data": data, "train": train_section}
    raw |= {"output_dir": str(root / "jobs"), "run_name": job_id}
    try:
        return load_config(raw).model_dump()
    except ConfigError as err:
        raise refusal(err, param="tunery") from None


def check_ceilings(config: dict[str, Any], settings: Settings, rows: int) -> None:
    """Refuse at creation what would fail later or run forever: each value (the table in
    `ceilings.CEILINGS`), and the steps they add up to."""
    ceilings.check_config(config, settings)
    train = config["train"]
    if train.get("max_steps") is None:
        epochs, batch = estimated_epochs_and_batch(train, rows)
        per_epoch = -(-max(rows, 1) // (batch * train.get("grad_accum", 1)))
        steps = per_epoch * epochs
        if steps > settings.max_job_steps:
            raise ApiError(
                400, f"{epochs:g} epochs over {rows} rows is about {steps:.0f} steps; this server "
                f"allows at most {settings.max_job_steps} (fewer epochs, or set tunery.train.max_steps)",
                code="over_server_limit", param="hyperparameters.n_epochs",
            )  # fmt: skip


def estimated_epochs_and_batch(train: dict[str, Any], rows: int) -> tuple[float, int]:
    """A job's epochs and batch size for its step estimate: auto values by their rules (training/auto.py)
    from the rows alone; the token and memory bounds are known only once the worker tokenises the data."""
    from tunery.training.auto import choose_batch_size, choose_epochs

    epochs = train["epochs"]
    if epochs == "auto":
        epochs = choose_epochs(rows, supervised_tokens=None).value  # tokens unknown here: the rows decide
    batch = train["batch_size"]
    if batch == "auto":  # memory unknown here: the rule's bound by steps only; one token an example
        seen = None if train.get("max_steps") else math.ceil(epochs * max(rows, 1))
        batch = choose_batch_size(max(rows, 1), seen, 1, 1, 1 << 62, None, train.get("grad_accum", 1)).value
    return float(epochs), int(batch)


DEVICE = re.compile(r"(auto|cpu|mps|cuda)(:\d{1,3})?")


def check_device(device: str, settings: Settings) -> None:
    """`tunery.model.device` must exist where the job runs: checked here for the local worker (Celery
    workers are other machines: `resources.gpus` routes those)."""
    match = DEVICE.fullmatch(device)
    if match is None:
        raise ApiError(400, f"unknown device '{device[:40]}': use auto, cpu, cuda, cuda:N or mps",
                       code="device_not_found", param="tunery.model.device")  # fmt: skip
    if settings.broker_url or match.group(1) in ("auto", "cpu"):
        return
    found = local_devices(match.group(1))
    index = int(match.group(2)[1:]) if match.group(2) else 0
    if index >= found:
        raise ApiError(
            400, f"device {device} does not exist on this server ({found} {match.group(1)} device(s)); "
            "use auto or cpu", code="device_not_found", param="tunery.model.device",
        )  # fmt: skip


def local_devices(kind: str) -> int:
    """How many devices of a kind this machine has (torch is imported only when a job asks for one)."""
    import torch

    if kind == "mps":
        return int(torch.backends.mps.is_available())
    return torch.cuda.device_count()


def check_batch_splits(config: dict[str, Any], gpus: int) -> None:
    """A job on several GPUs splits train.batch_size (the global micro-batch) evenly over them."""
    from tunery.config import ConfigError, load_config
    from tunery.launch import micro_batch_per_process

    try:
        micro_batch_per_process(load_config(config), gpus)
    except ConfigError as err:
        raise refusal(err, param="resources.gpus") from None


def list_jobs(
    session: Session, project: str, after: str | None = None, limit: int = 20
) -> tuple[list[Job], bool]:
    """Newest first; `after` is the last id of the previous page. Returns (jobs, whether more follow)."""
    query = select(Job).where(Job.project == project).order_by(Job.seq.desc())
    if after:
        query = query.where(Job.seq < get_job(session, project, after).seq)
    return fetch_page(session, query, limit)


def cancel_job(session: Session, project: str, job_id: str) -> Job:
    """Stop the job; a running one's training process group is signalled by its runner within a second.

    The answer says `cancelled` at once (as OpenAI's does); cancelling a finished job (succeeded, failed
    or already cancelled) is a 400 `job_finished`, the same for all three."""
    job = get_job(session, project, job_id)
    status = shown_status(job)
    if status in FINISHED:  # as OpenAI: only a job still validating, queued or running can be cancelled
        raise ApiError(
            400,
            f"job {job_id} is already {status}: only an unfinished job can be cancelled",
            code="job_finished",
        )
    cancel(session, job)
    session.commit()
    return job


def list_events(
    session: Session, project: str, job_id: str, after: str | None = None, limit: int = 20
) -> tuple[list[Event], bool]:
    """Newest first, as OpenAI lists them; `after` pages back in time."""
    job = get_job(session, project, job_id)
    query = select(Event).where(Event.job_id == job.id).order_by(Event.seq.desc())
    if after:
        anchor = session.scalar(select(Event.seq).where(Event.id == after, Event.job_id == job.id))
        if anchor is None:
            raise not_found("fine_tuning.job.event", after)
        query = query.where(Event.seq < anchor)
    return fetch_page(session, query, limit)


@dataclass(frozen=True)
class SavedCheckpoint:
    row: Checkpoint
    model: str  # the job's model id, which the checkpoint's id extends
    on_disk: bool  # train.keep_checkpoints prunes older ones


def list_checkpoints(
    session: Session, project: str, settings: Settings, job_id: str, after: str | None = None, limit: int = 10
) -> tuple[list[SavedCheckpoint], bool]:
    """Every checkpoint the job saved, newest first, and whether more follow."""
    job = get_job(session, project, job_id)
    query = select(Checkpoint).where(Checkpoint.job_id == job.id).order_by(Checkpoint.step.desc())
    if after:
        anchor = session.scalar(
            select(Checkpoint.step).where(Checkpoint.id == after, Checkpoint.job_id == job.id)
        )
        if anchor is None:
            raise not_found("fine_tuning.job.checkpoint", after)
        query = query.where(Checkpoint.step < anchor)
    rows, more = fetch_page(session, query, limit)
    name = job.fine_tuned_model or model_id(job)
    return [SavedCheckpoint(row, name, (settings.artifacts / row.path).exists()) for row in rows], more
