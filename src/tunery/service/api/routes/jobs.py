"""`/v1/fine_tuning/jobs`: create, list, get, cancel, events, checkpoints."""

from __future__ import annotations

from fastapi import APIRouter

from tunery.service.api.deps import CurrentProject, DispatcherDep, PageLimit, SessionDep, SettingsDep
from tunery.service.domain import jobs
from tunery.service.domain.lookups import get_job
from tunery.service.schemas.common import ListPage
from tunery.service.schemas.jobs import CheckpointPublic, EventPublic, JobCreate, JobPublic

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


@router.post("", response_model=JobPublic)
def create_job(
    body: JobCreate,
    session: SessionDep,
    project: CurrentProject,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> JobPublic:
    """Create a job; `tunery` takes any training-config keys beyond OpenAI's hyperparameters."""
    return JobPublic.of(jobs.create_job(session, project, body, settings, dispatcher))


@router.get("", response_model=ListPage[JobPublic])
def list_jobs(
    session: SessionDep, project: CurrentProject, after: str | None = None, limit: PageLimit = 20
) -> ListPage[JobPublic]:
    """Newest first; `after` is the last id of the previous page."""
    found, more = jobs.list_jobs(session, project, after, limit)
    return ListPage.of([JobPublic.of(job) for job in found], has_more=more)


@router.get("/{job_id}", response_model=JobPublic)
def retrieve_job(job_id: str, session: SessionDep, project: CurrentProject) -> JobPublic:
    return JobPublic.of(get_job(session, project, job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, session: SessionDep, project: CurrentProject) -> JobPublic:
    """Stop the job; a running one's training process group is signalled by its runner within a second."""
    return JobPublic.of(jobs.cancel_job(session, project, job_id))


@router.get("/{job_id}/events", response_model=ListPage[EventPublic])
def list_events(
    job_id: str, session: SessionDep, project: CurrentProject, after: str | None = None, limit: PageLimit = 20
) -> ListPage[EventPublic]:
    """Newest first, as OpenAI lists them; `after` pages back in time."""
    events, more = jobs.list_events(session, project, job_id, after, limit)
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
    saved, more = jobs.list_checkpoints(session, project, settings, job_id, after, limit)
    return ListPage.of([CheckpointPublic.of(c.row, c.model, c.on_disk) for c in saved], has_more=more)
