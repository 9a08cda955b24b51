"""Celery for jobs on separate machines: `tunery worker` consumes, the server sends and re-sends.

The settings follow what long tasks need on Redis:
- late acknowledgement and reject on worker lost: a job is acknowledged when it ends,
  and a worker killed mid-job leaves its message to be delivered again;
- a visibility timeout above the longest job, so Redis does not hand a running job
  to a second worker while the first is still at it;
- prefetch of one, and the solo pool (or a pool of `--slots` threads): a worker holds
  at most `slots` jobs, each in a thread of its own that starts the training child;
- routing by queue (tunery.jobs.resources): a job needing g GPUs goes to
  `<queue>.gpus-<g>`, which only workers with at least g GPUs read;
- the database lease in `run_job` makes a second delivery a no-op while the job runs;
- the server's `Redispatcher` re-sends a job whose runner died (lease expired)
  without waiting for the visibility timeout.

Cancel does not use Celery's revoke: the runner sees the job's flag and signals the
training's process group.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cache

from celery import Celery, signals
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tunery.jobs.resources import GpuPool, JobResources, job_queue, worker_queues
from tunery.settings import Settings
from tunery.store.tables import Job

log = logging.getLogger("tunery.jobs")
TASK = "tunery.run_job"
_stopping = threading.Event()
_gpus = GpuPool(0)  # this worker's GPUs (`tunery worker --gpus`)


def make_celery(settings: Settings) -> Celery:
    app = Celery("tunery", broker=settings.broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)(run_job_task)
    return app


def run_job_task(job_id: str) -> str | None:
    from celery import current_task

    from tunery.jobs.runner import run_job

    settings, sessions = _worker_state()
    with sessions() as session:
        needs = JobResources.model_validate(
            session.scalar(select(Job.resources).where(Job.id == job_id)) or {}
        )
    gpus = _gpus.take(needs.gpus)
    try:
        worker = current_task.request.hostname if current_task else None
        return run_job(job_id, sessions, settings, should_stop=_stopping.is_set, worker=worker, gpus=gpus)
    finally:
        _gpus.give_back(gpus)


@cache
def _worker_state() -> tuple[Settings, sessionmaker[Session]]:
    from tunery.store import connect, session_factory

    settings = Settings()
    return settings, session_factory(connect(settings.database_url))


@signals.worker_shutting_down.connect
def _on_shutdown(**_kwargs) -> None:
    _stopping.set()  # the runner stops the training; the job resumes on another worker


def run_worker(
    settings: Settings,
    name: str | None = None,
    loglevel: str = "INFO",
    queues: list[str] | None = None,
    gpus: int = 0,
    slots: int = 1,
) -> None:
    """`tunery worker`: consume the queues of its pools and GPUs, at most `slots` jobs at a time."""
    global _gpus
    _worker_state()  # migrate and connect before taking work
    _gpus = GpuPool(gpus)
    app = make_celery(settings)
    serves = worker_queues(queues or [settings.queue], gpus)
    log.info("worker %s: %d slots, %d GPUs, queues %s", name or "", slots, gpus, ", ".join(serves))
    argv = [
        "worker",
        "--pool=solo" if slots == 1 else "--pool=threads",
        f"--concurrency={slots}",
        f"--queues={','.join(serves)}",
        f"--loglevel={loglevel}",
    ]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    if name:
        argv.append(f"--hostname={name}")
    app.worker_main(argv)


class Redispatcher:
    """In the server with a broker: send new jobs, and re-send those whose runner died."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings):
        self.sessions, self.settings = sessions, settings
        self.app = make_celery(settings)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tunery-redispatch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout)

    def submit(self, job_id: str) -> None:
        with self.sessions.begin() as session:
            resources = session.scalar(select(Job.resources).where(Job.id == job_id)) or {}
            queue = job_queue(JobResources.model_validate(resources), self.settings.queue)
            self.app.send_task(TASK, args=[job_id], queue=queue)
            session.execute(update(Job).where(Job.id == job_id).values(dispatched_at=time.time()))

    def _loop(self) -> None:
        while not self._stopping.wait(self.settings.poll_seconds):
            try:
                for job_id in self._orphans():
                    log.info("re-sending job %s: its runner is gone", job_id)
                    self.submit(job_id)
            except Exception:
                log.exception("redispatch failed")

    def _orphans(self) -> list[str]:
        """Jobs never sent, and running jobs whose lease ran out (or was let go by a stopping worker)."""
        now = time.time()
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(Job.id).where(
                        or_(
                            (Job.status == "queued") & Job.dispatched_at.is_(None),
                            (Job.status == "running")
                            & or_(Job.lease_owner.is_(None), Job.lease_expires < now)
                            & or_(
                                Job.dispatched_at.is_(None),
                                Job.dispatched_at < now - self.settings.lease_seconds,
                            ),
                        )
                    )
                )
            )
