"""`/v1/fine_tuning/jobs`: create, list, get, cancel, events, checkpoints."""

from __future__ import annotations

import copy
from pathlib import Path

from fastapi import APIRouter
from sqlalchemy import select

from tunery.jobs.lifecycle import add_event, cancel, model_id, transition
from tunery.service.api.deps import (
    CurrentProject,
    DispatcherDep,
    PageLimit,
    SessionDep,
    SettingsDep,
    fetch_page,
    get_owned,
)
from tunery.service.api.routes.files import get_file
from tunery.service.errors import ApiError, not_found
from tunery.service.schemas.common import ListPage
from tunery.service.schemas.jobs import (
    CheckpointPublic,
    EventPublic,
    Hyperparameters,
    JobCreate,
    JobPublic,
    Method,
    SupervisedMethod,
)
from tunery.store.tables import Checkpoint, Event, Job, new_id

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
SET_BY_THE_JOB = ("output_dir", "run_name")


@router.post("", response_model=JobPublic)
def create_job(
    body: JobCreate,
    session: SessionDep,
    project: CurrentProject,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> JobPublic:
    """Create a job; `tunery` takes any training-config keys beyond OpenAI's hyperparameters."""
    training = get_file(session, project, body.training_file)
    validation = get_file(session, project, body.validation_file) if body.validation_file else None
    method = body.method or Method(
        type="supervised", supervised=SupervisedMethod(hyperparameters=body.hyperparameters)
    )
    if method.type != "supervised":
        raise ApiError(400, f"method '{method.type}' is not supported yet; use 'supervised'", param="method")
    hyper = (
        (method.supervised and method.supervised.hyperparameters) or body.hyperparameters or Hyperparameters()
    )
    job_id = new_id("ftjob")
    check_model(body.model, settings)
    config = job_config(
        body, hyper, job_id, settings.artifacts, training.path, validation and validation.path
    )
    if config["model"]["trust_remote_code"] and not settings.allow_trust_remote_code:
        raise ApiError(
            400, "tunery.model.trust_remote_code would run the model repository's code on this server, "
            "which does not allow it (TUNERY_ALLOW_TRUST_REMOTE_CODE)",
            code="trust_remote_code_not_allowed", param="tunery.model.trust_remote_code",
        )  # fmt: skip
    if body.resources and body.resources.gpus > 1:
        check_batch_splits(config, body.resources.gpus)
    epochs = config["train"]["epochs"]
    resolved = Hyperparameters(
        batch_size=config["train"]["batch_size"],
        learning_rate_multiplier=config["train"]["lr"] / DEFAULT_LR,
        n_epochs=int(epochs) if float(epochs).is_integer() else epochs,
    )
    method = Method(type="supervised", supervised=SupervisedMethod(hyperparameters=resolved))
    job = Job(
        id=job_id, project=project, model=body.model, training_file=training.id,
        validation_file=validation.id if validation else None, suffix=body.suffix, seed=config["train"]["seed"],
        hyperparameters=resolved.model_dump(), method=method.model_dump(), config=config, metadata_=body.metadata,
        status="validating_files", run_dir=f"jobs/{job_id}",
        resources=(body.resources.model_dump() if body.resources else None),
    )  # fmt: skip
    session.add(job)
    session.flush()  # the events refer to it
    add_event(session, job, f"Created fine-tuning job: {job_id}", data={"status": "validating_files"})
    add_event(
        session, job, f"Validating training file: {training.id} ({training.rows} rows, {training.format})"
    )
    transition(session, job, "queued", "Files validated, moving job to queued state")
    session.commit()
    dispatcher.submit(job.id)
    return JobPublic.of(job)


DEFAULT_LR = 2e-4  # TrainConfig.lr's default: learning_rate_multiplier scales it


def check_model(name: str, settings) -> None:
    """A job's model may not be a URL, nor a local path outside the server's model roots."""
    from tunery.models import ModelNotFoundError, check_model_allowed

    try:
        check_model_allowed(name, settings.model_roots)
    except ModelNotFoundError as err:
        raise ApiError(400, str(err), code="model_not_allowed", param="model") from None


def job_config(
    body: JobCreate, hyper: Hyperparameters, job_id: str, root: Path, train: str, valid: str | None
) -> dict:
    """The job's training config: the `tunery` extension, OpenAI's hyperparameters on top, the job's own paths."""
    from tunery.config import ConfigError, load_config

    extension = copy.deepcopy(body.tunery or {})
    for key in SET_BY_THE_JOB:
        if key in extension:
            raise ApiError(400, f"tunery.{key} is set by the job; leave it out", param=f"tunery.{key}")
    model = extension.pop("model", None) or {}
    if not isinstance(model, dict) or "name" in model:
        raise ApiError(
            400,
            "the model is the job's `model`; tunery.model takes only its other keys",
            param="tunery.model",
        )
    data = extension.pop("data", {}) or {}
    if "train" in data or "validation" in data:
        raise ApiError(400, "the data files are training_file and validation_file", param="tunery.data")
    train_section = dict(extension.pop("train", {}) or {})
    if isinstance(hyper.n_epochs, int | float):
        train_section["epochs"] = hyper.n_epochs
    if isinstance(hyper.batch_size, int):
        train_section["batch_size"] = hyper.batch_size
    if isinstance(hyper.learning_rate_multiplier, float | int):
        train_section["lr"] = DEFAULT_LR * hyper.learning_rate_multiplier
    if body.seed is not None:
        train_section["seed"] = body.seed
    data["train"] = str(root / train)
    if valid:
        data["validation"] = str(root / valid)
    raw = {**extension, "model": {**model, "name": body.model}, "data": data, "train": train_section}
    raw |= {"output_dir": str(root / "jobs"), "run_name": job_id}
    try:
        return load_config(raw).model_dump()
    except ConfigError as err:
        raise ApiError(400, str(err), code="invalid_config", param="tunery") from None


def check_batch_splits(config: dict, gpus: int) -> None:
    """A job on several GPUs splits train.batch_size (the global micro-batch) evenly over them."""
    from tunery.config import ConfigError, load_config
    from tunery.launch import micro_batch_per_process

    try:
        micro_batch_per_process(load_config(config), gpus)
    except ConfigError as err:
        raise ApiError(400, str(err), code="invalid_config", param="resources.gpus") from None


def get_job(session, project: str, job_id: str) -> Job:
    return get_owned(session, Job, job_id, project, "fine_tuning.job")


@router.get("", response_model=ListPage[JobPublic])
def list_jobs(
    session: SessionDep, project: CurrentProject, after: str | None = None, limit: PageLimit = 20
) -> ListPage[JobPublic]:
    """Newest first; `after` is the last id of the previous page."""
    query = select(Job).where(Job.project == project).order_by(Job.seq.desc())
    if after:
        query = query.where(Job.seq < get_job(session, project, after).seq)
    jobs, more = fetch_page(session, query, limit)
    return ListPage.of([JobPublic.of(job) for job in jobs], has_more=more)


@router.get("/{job_id}", response_model=JobPublic)
def retrieve_job(job_id: str, session: SessionDep, project: CurrentProject) -> JobPublic:
    return JobPublic.of(get_job(session, project, job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, session: SessionDep, project: CurrentProject) -> JobPublic:
    """Stop the job; a running one's training process group is signalled by its runner within a second."""
    job = get_job(session, project, job_id)
    if job.status in ("succeeded", "failed"):
        raise ApiError(400, f"job {job_id} has already {job.status}", code="job_finished")
    cancel(session, job)
    session.commit()
    return JobPublic.of(job)


@router.get("/{job_id}/events", response_model=ListPage[EventPublic])
def list_events(
    job_id: str, session: SessionDep, project: CurrentProject, after: str | None = None, limit: PageLimit = 20
) -> ListPage[EventPublic]:
    """Newest first, as OpenAI lists them; `after` pages back in time."""
    job = get_job(session, project, job_id)
    query = select(Event).where(Event.job_id == job.id).order_by(Event.seq.desc())
    if after:
        anchor = session.scalar(select(Event.seq).where(Event.id == after, Event.job_id == job.id))
        if anchor is None:
            raise not_found("fine_tuning.job.event", after)
        query = query.where(Event.seq < anchor)
    events, more = fetch_page(session, query, limit)
    return ListPage.of([EventPublic.of(e) for e in events], has_more=more)


@router.get("/{job_id}/checkpoints", response_model=ListPage[CheckpointPublic])
def list_checkpoints(
    job_id: str,
    session: SessionDep,
    project: CurrentProject,
    settings: SettingsDep,
    after: str | None = None,
    limit: PageLimit = 10,
) -> ListPage[CheckpointPublic]:
    """Every checkpoint the job saved, newest first; `on_disk` says whether pruning has kept it."""
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
    items = [CheckpointPublic.of(c, name, (settings.artifacts / c.path).exists()) for c in rows]
    return ListPage.of(items, has_more=more)
