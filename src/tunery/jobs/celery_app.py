"""Celery for jobs on separate machines: `tunery worker` consumes, the server sends and re-sends.

The settings follow what long tasks need on Redis:
- late acknowledgement and reject on worker lost: a job is acknowledged when it ends,
  and a worker killed mid-job leaves its message to be delivered again;
- a visibility timeout above the longest job, so Redis does not hand a running job
  to a second worker while the first is still at it;
- prefetch of one and the solo pool: a worker holds one job, in its main process,
  which starts the training child;
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

from tunery.service.settings import Settings
from tunery.store.tables import Job

log = logging.getLogger("tunery.jobs")
TASK = "tunery.run_job"
_stopping = threading.Event()


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
    from tunery.jobs.runner import run_job

    settings, sessions = _worker_state()
    return run_job(job_id, sessions, settings, should_stop=_stopping.is_set)


@cache
def _worker_state() -> tuple[Settings, sessionmaker[Session]]:
    from tunery.store import connect, session_factory

    settings = Settings()
    return settings, session_factory(connect(settings.database_url))


@signals.worker_shutting_down.connect
def _on_shutdown(**_kwargs) -> None:
    _stopping.set()  # the runner stops the training; the job resumes on another worker


def run_worker(settings: Settings, name: str | None = None, loglevel: str = "INFO") -> None:
    """`tunery worker`: consume the job queue, one job at a time."""
    _worker_state()  # migrate and connect before taking work
    app = make_celery(settings)
    argv = [
        "worker",
        "--pool=solo",
        "--concurrency=1",
        f"--queues={settings.queue}",
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
        self.app.send_task(TASK, args=[job_id], queue=self.settings.queue)
        with self.sessions.begin() as session:
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
