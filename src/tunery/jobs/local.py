"""The local worker: threads in the server that run queued jobs, `max_concurrent_jobs` at a time.

It looks for work in the database, not in memory, so after a restart it finds jobs
left `queued`, and `running` jobs whose lease has expired, and resumes them.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from tunery.jobs.runner import run_job
from tunery.settings import Settings
from tunery.store.tables import Job

log = logging.getLogger("tunery.jobs")


class LocalWorker:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings):
        self.sessions, self.settings = sessions, settings
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._running: dict[str, threading.Thread] = {}
        self._loop: threading.Thread | None = None

    def start(self) -> None:
        self._loop = threading.Thread(target=self._poll, name="tunery-local-worker", daemon=True)
        self._loop.start()

    def submit(self, job_id: str) -> None:
        self._wake.set()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the training processes; their jobs stay `running` and resume at the next start."""
        self._stopping.set()
        self._wake.set()
        deadline = time.time() + timeout
        for thread in list(self._running.values()):
            thread.join(max(0.0, deadline - time.time()))

    def _poll(self) -> None:
        while not self._stopping.is_set():
            try:
                self._start_runnable()
            except Exception:  # a database hiccup must not end the worker
                log.exception("local worker: looking for jobs failed")
            self._wake.wait(self.settings.poll_seconds)
            self._wake.clear()

    def _start_runnable(self) -> None:
        self._running = {job: thread for job, thread in self._running.items() if thread.is_alive()}
        free = self.settings.max_concurrent_jobs - len(self._running)
        if free <= 0:
            return
        with self.sessions() as session:
            candidates = session.scalars(
                select(Job.id)
                .where(
                    Job.status.in_(("queued", "running")),
                    or_(Job.lease_owner.is_(None), Job.lease_expires < time.time()),
                )
                .order_by(Job.seq)
                .limit(free + len(self._running))
            ).all()
        for job_id in candidates:
            if job_id in self._running or free <= 0:
                continue
            thread = threading.Thread(target=self._run, args=(job_id,), name=f"job-{job_id}", daemon=True)
            self._running[job_id] = thread
            thread.start()
            free -= 1

    def _run(self, job_id: str) -> None:
        try:
            run_job(job_id, self.sessions, self.settings, should_stop=self._stopping.is_set)
        except Exception:
            log.exception("job %s: runner failed", job_id)
        finally:
            self._wake.set()
