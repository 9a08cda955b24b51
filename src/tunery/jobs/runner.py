"""The job runner: take a job's lease, train it in a child process, watch, record, finish.

    run_job(job_id, sessions, settings, owner="host:pid:thread")

The same function runs inside the local worker and inside a Celery task, so a job
behaves the same wherever it runs. What makes it safe to run on a broker that may
deliver a job twice, and on workers that may die:

- a lease in the database: `lease_owner`/`lease_expires` are taken with one
  conditional UPDATE and renewed while the child runs, so only one runner holds a
  job at a time; a dead runner's lease expires and another takes the job over;
- the training resumes from its run directory's newest complete checkpoint, so a
  killed process (or worker) costs at most one checkpoint interval;
- cancel is a flag in the row: the runner holding the lease sees it and signals the
  child's whole process group (the child leads its own session).

Metrics lines and checkpoints become events and checkpoint rows as they appear; the
byte offset into metrics.jsonl is kept in the row, so a resumed job does not repeat them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Result, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tunery.jobs.lifecycle import ACTIVE, add_event, fail, register_model, transition
from tunery.settings import Settings
from tunery.store.tables import Checkpoint, Job
from tunery.training.checkpoint import checkpoint_step, complete_checkpoints, latest_checkpoint

log = logging.getLogger("tunery.jobs")


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_job(
    job_id: str,
    sessions: sessionmaker[Session],
    settings: Settings,
    owner: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    worker: str | None = None,
    gpus: list[int] | None = None,
) -> str | None:
    """Run `job_id` to an end if its lease is free; returns its final status, or None if not run.

    `worker` names the Celery worker (recorded on the job); `gpus` are the GPU ids it gave the job.
    """
    owner = owner or default_owner()
    if not acquire_lease(sessions, job_id, owner, settings.lease_seconds):
        return None
    try:
        while True:
            outcome = _attempt(job_id, sessions, settings, owner, should_stop, worker, gpus)
            if outcome != "retry":
                return outcome
    except Exception:
        log.exception("runner for %s failed", job_id)
        raise
    finally:
        release_lease(sessions, job_id, owner)


def acquire_lease(sessions: sessionmaker[Session], job_id: str, owner: str, seconds: float) -> bool:
    now = time.time()
    with sessions.begin() as session:
        taken = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status.in_(ACTIVE),
                or_(Job.lease_owner.is_(None), Job.lease_expires < now),
            )
            .values(lease_owner=owner, lease_expires=now + seconds)
        )
        return _rows_matched(taken) == 1


def renew_lease(session: Session, job_id: str, owner: str, seconds: float) -> bool:
    renewed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner)
        .values(lease_expires=time.time() + seconds)
    )
    return _rows_matched(renewed) == 1


def _rows_matched(result: Result[Any]) -> int:
    """Rows an UPDATE matched: `Session.execute` is typed `Result`, but DML gives a `CursorResult`."""
    return cast("CursorResult[Any]", result).rowcount


def release_lease(sessions: sessionmaker[Session], job_id: str, owner: str) -> None:
    with sessions.begin() as session:
        session.execute(
            update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(lease_owner=None, pid=None)
        )


def _attempt(job_id, sessions, settings: Settings, owner: str, should_stop, worker=None, gpus=None) -> str:
    """One training process for the job: 'retry' when it died from a signal and may resume."""
    root = settings.artifacts
    with sessions.begin() as session:
        job = _job(session, job_id)
        if job.cancel_requested or job.status not in ACTIVE:
            if job.status in ACTIVE:
                transition(session, job, "cancelled", "Fine-tuning job cancelled")
            return job.status
        run_dir = root / job.run_dir
        _kill_leftover(job)
        if job.attempts >= settings.max_attempts:
            fail(
                session, job, "training_process_died",
                f"the training process died {job.attempts} times without an error; see {run_dir}.log "
                "(out of memory is the usual cause: lower train.batch_size or data.max_length)",
            )  # fmt: skip
            return "failed"
        job.attempts += 1
        checkpoint = latest_checkpoint(run_dir / "checkpoints")  # the one training will resume from
        if job.status != "running":
            transition(session, job, "running", "Fine-tuning job started")
        if worker:
            job.worker = worker
            on = f"GPUs {','.join(map(str, gpus))}" if gpus else "no GPU"
            add_event(
                session, job, f"Running on worker {worker} ({on})", data={"worker": worker, "gpus": gpus}
            )
        if job.attempts > 1 or checkpoint is not None:
            step = checkpoint_step(checkpoint) if checkpoint else 0
            message = (
                f"Resuming from checkpoint step {step} (attempt {job.attempts})"
                if checkpoint
                else f"Restarting from step 0: no complete checkpoint (attempt {job.attempts})"
            )
            add_event(session, job, message, data={"resumed_from_step": step, "attempt": job.attempts})
        spec = root / "jobs" / f"{job.id}.spec.json"
        spec.parent.mkdir(parents=True, exist_ok=True)
        failure = root / "jobs" / f"{job.id}.failure.json"
        spec.write_text(
            json.dumps(
                {
                    "config": job.config,
                    "run_dir": str(run_dir),
                    "failure_file": str(failure),
                    "parent_pid": os.getpid(),
                    "processes": max(1, len(gpus or [])),  # one training process per GPU
                }
            ),
            encoding="utf-8",
        )
        with open(root / "jobs" / f"{job.id}.log", "ab") as logfile:
            process = subprocess.Popen(
                [sys.executable, "-m", "tunery.jobs.child", str(spec)],
                start_new_session=True,  # its own process group: cancel signals the whole group
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=_child_env(settings, gpus),
            )
        job.pid, job.host = process.pid, socket.gethostname()
    return _watch(job_id, process, run_dir, failure, sessions, settings, owner, should_stop)


def _watch(
    job_id, process, run_dir: Path, failure: Path, sessions, settings: Settings, owner, should_stop
) -> str:
    interval = min(0.5, settings.poll_seconds)
    while True:
        returncode = process.poll()
        with sessions.begin() as session:
            job = _job(session, job_id)
            _record_progress(session, job, run_dir, settings.artifacts)
            if returncode is not None:
                return _finish(session, job, returncode, run_dir, failure, settings.artifacts)
            lost = not renew_lease(session, job_id, owner, settings.lease_seconds)
            if job.cancel_requested or job.status == "cancelled" or lost:
                _stop(process)
                if lost:  # someone else holds the job now: leave it to them
                    log.warning("lost the lease of %s; stopped its training", job_id)
                    return job.status
                _record_progress(session, job, run_dir, settings.artifacts)
                if job.status != "cancelled":
                    transition(session, job, "cancelled", "Fine-tuning job cancelled")
                job.pid = None
                return "cancelled"
            if should_stop():
                _stop(process)
                add_event(
                    session, job, "Worker stopping; the job resumes from its last checkpoint", level="warn"
                )
                job.pid = None
                job.attempts -= 1  # a deliberate stop is not a failed attempt
                return "running"
        time.sleep(interval)


def _child_env(settings: Settings, gpus: list[int] | None) -> dict[str, str]:
    """The server's environment, its URL policy for what the job's request named (the tracker checks
    it again), the operator's MLflow URI or none (a store in the run folder), and the job's GPUs."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **settings.url_policy.job_env(), **_visible(gpus)}
    env.pop("MLFLOW_TRACKING_URI", None)
    if settings.mlflow_tracking_uri:
        env["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    return env


def _visible(gpus: list[int] | None) -> dict[str, str]:
    """The GPUs the worker gave the job are the only ones its training sees."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))} if gpus else {}


def _stop(process: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM to the process group, SIGKILL after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # anything the child left in its group


def _kill_leftover(job: Job) -> None:
    """A training process of a dead runner on this host (it should have died with it)."""
    if not job.pid or job.host != socket.gethostname():
        return
    try:
        cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"tunery.jobs.child" in cmdline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, signal.SIGKILL)


def _finish(session: Session, job: Job, returncode: int, run_dir: Path, failure: Path, root: Path) -> str:
    job.pid = None
    if returncode == 0:
        record = _read_json(run_dir / "run.json") or {}
        adapter = str((run_dir / "adapter").relative_to(root))
        history = _read_history(run_dir)
        tokens = [row["supervised_tokens"] for row in history if "supervised_tokens" in row]
        job.trained_tokens = tokens[-1] if tokens else None
        model = register_model(session, job, adapter, record)
        job.fine_tuned_model = model.id
        add_event(session, job, f"New fine-tuned model created: {model.id}", data={"model": model.id})
        transition(session, job, "succeeded", "The job has successfully completed")
        return "succeeded"
    problem = _read_json(failure)
    if problem is not None:
        code, message = failure_reason(problem)
        fail(session, job, code, message)
        return "failed"
    how = f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    add_event(
        session, job, f"Training process ended unexpectedly ({how}); the job will resume from its last checkpoint",
        level="warn", data={"returncode": returncode},
    )  # fmt: skip
    return "retry"


def failure_reason(problem: dict) -> tuple[str, str]:
    """(code, message a person can act on) for an error the training process reported."""
    code, message = problem.get("code", "internal_error"), problem.get("message", "")
    if code == "out_of_memory" and "train.batch_size" not in message:  # a plain OOM: say what bounds memory
        return code, (
            f"out of memory ({message.splitlines()[0] if message else 'no detail'}); lower train.batch_size or "
            "data.max_length, raise train.grad_accum, or turn on train.gradient_checkpointing"
        )
    if code == "internal_error":
        return code, f"{message} (an internal error; the traceback is in the job log)"
    return code, message


def _record_progress(session: Session, job: Job, run_dir: Path, root: Path) -> None:
    """New metrics lines -> events; new complete checkpoints -> checkpoint rows."""
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        with metrics.open("rb") as handle:
            handle.seek(job.metrics_offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for the next look
        for line in complete.decode("utf-8").splitlines():
            if line.strip():
                _metrics_event(session, job, json.loads(line))
        job.metrics_offset += len(complete)
    known = {step for (step,) in session.execute(select(Checkpoint.step).where(Checkpoint.job_id == job.id))}
    # Only checkpoints that verify, as resume would trust them; oldest first, so events read in order.
    for folder in reversed(complete_checkpoints(run_dir / "checkpoints", skip_steps=known)):
        step = checkpoint_step(folder)
        rows = [row for row in _read_history(run_dir) if row.get("step") == step]
        metrics_at = {"step": step}
        for row in rows:
            if "loss" in row:
                metrics_at["train_loss"] = row["loss"]
            if "val_loss" in row:
                metrics_at["valid_loss"] = row["val_loss"]
        session.add(
            Checkpoint(job_id=job.id, step=step, metrics=metrics_at, path=str(folder.relative_to(root)))
        )
        add_event(session, job, f"Checkpoint saved at step {step}", data={"step": step})


def _metrics_event(session: Session, job: Job, row: dict) -> None:
    step = row.get("step")
    if "warning" in row:
        add_event(session, job, f"Step {step}: {row['warning']}", level="warn", data=row)
    elif "val_loss" in row:
        data = {"step": step, "valid_loss": row["val_loss"]}
        add_event(
            session, job, f"Step {step}: validation loss={row['val_loss']:.4f}", type="metrics", data=data
        )
    elif "loss" in row:
        total = (job.config.get("train") or {}).get("max_steps")
        data = {
            "step": step,
            "train_loss": row["loss"],
            **{k: v for k, v in row.items() if k not in ("step", "loss")},
        }
        where = f"{step}/{total}" if total else f"{step}"
        add_event(session, job, f"Step {where}: training loss={row['loss']:.4f}", type="metrics", data=data)


def _job(session: Session, job_id: str) -> Job:
    return session.scalars(select(Job).where(Job.id == job_id)).one()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _read_history(run_dir: Path) -> list[dict]:
    file = run_dir / "metrics.jsonl"
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
