"""Job states and events, as OpenAI names them; every transition is an event.

    validating_files -> queued -> running -> succeeded | failed | cancelled

Shared by the API (create, cancel) and the runner (run, finish), so both speak alike.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunery.store.tables import DatasetVersionRow, Event, File, Job, Model, now

ACTIVE = ("validating_files", "queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
log = logging.getLogger("tunery.jobs")
# An absolute path of the server (`/srv/tunery/artifacts/jobs/ftjob-1/data.jsonl`): users see its last part.
SERVER_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^\s/'\"(),;:]+){2,}")


def without_server_paths(message: str) -> str:
    """A message fit for API users: every absolute server path shortened to `…/<last part>`."""
    return SERVER_PATH.sub(lambda found: "…/" + found.group(0).rsplit("/", 1)[-1], message)


def shown_status(job: Job) -> str:
    """The status users see: a cancel asked for is `cancelled` at once, as OpenAI answers it; the
    runner stops the training process within a second and records the transition."""
    return "cancelled" if job.cancel_requested and job.status in ACTIVE else job.status


def add_event(
    session: Session,
    job: Job,
    message: str,
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None = None,
) -> Event:
    event = Event(job_id=job.id, message=message, level=level, type=type, data=data, created_at=now())
    session.add(event)
    return event


def transition(session: Session, job: Job, status: str, message: str, level: str = "info") -> None:
    job.status = status
    if status in FINISHED:
        job.finished_at = now()
    add_event(session, job, message, level=level, data={"status": status})


def fail(session: Session, job: Job, code: str, message: str) -> None:
    """Record a failure; the full message (with server paths) goes to the server log under the job's id."""
    log.warning("job %s failed (%s): %s", job.id, code, message)
    shown = without_server_paths(message)
    job.error = {"code": code, "message": shown, "param": None}
    transition(session, job, "failed", f"Job failed: {shown}", level="error")


def cancel(session: Session, job: Job) -> None:
    """Ask for a cancel; a job nobody is running is cancelled here, a running one by its runner."""
    if job.status in FINISHED:
        return
    asked_before, job.cancel_requested = job.cancel_requested, True
    unowned = job.lease_owner is None or (job.lease_expires or 0) < time.time()
    if job.status != "running" or unowned:
        if unowned:
            job.lease_owner = None
        transition(session, job, "cancelled", "Fine-tuning job cancelled")
    elif not asked_before:  # the API answers `cancelled` now; the runner stops the process within a second
        add_event(
            session,
            job,
            "Fine-tuning job cancelled: stopping its training process",
            data={"status": "cancelled"},
        )


def model_id(job: Job) -> str:
    """`ft:<base>:<suffix>:<job-id>`; a local model folder is named by its last part, a fine-tuned
    base (`ft:<base>:...`) by its own base."""
    base = Path(job.model.rstrip("/")).name if "/" in job.model else job.model
    if base.startswith("ft:"):
        base = base.split(":")[1]
    return f"ft:{base}:{job.suffix or job.project}:{job.id}"


def register_model(session: Session, job: Job, adapter: str, run_record: dict) -> Model:
    """The registry entry of a succeeded job, with its lineage."""
    training = session.scalar(select(File).where(File.id == job.training_file))
    dataset = (
        session.scalar(
            select(DatasetVersionRow)
            .where(DatasetVersionRow.file_id == job.training_file)
            .order_by(DatasetVersionRow.seq.desc())
        )
        if training
        else None
    )
    lineage = {
        "base_model": job.model,
        "job": job.id,
        "project": job.project,
        "training_file": job.training_file,
        "validation_file": job.validation_file,
        "dataset": {
            "content_hash": training.content_hash if training else None,
            "name": dataset.name if dataset else None,
            "version": dataset.version if dataset else None,
            "rows": training.rows if training else None,
        },
        "config": job.config,
        "metrics": run_record.get("metrics", {}),
        "versions": run_record.get("versions", {}),
        "artifact": adapter,
    }
    model = Model(
        id=model_id(job),
        project=job.project,
        job_id=job.id,
        base_model=job.model,
        path=adapter,
        lineage=lineage,
    )
    session.add(model)
    return model
