"""Minutes of CPU work a request starts (a GGUF export, a loss audit): a thread, a lock, a status file.

    status = new_status("export", "model.export", model=model_id, project=project)
    start_in_background(folder, status, work, lock=EXPORTS, failure_code="export_failed")
    read_status(folder, "export", status["id"])       # queued -> running (progress 0..1) -> succeeded | failed

Why a thread and a file, not a job: such work has nothing to resume, so it needs neither the job
runner's lease nor its child process. Each kind runs one at a time under its own lock (each holds
a whole model in memory). The status file, written atomically, is what the API, the dashboard and
a restarted server read; work a restart cut short stays "running" with a stale `updated_at`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunery.errors import error_code
from tunery.files import write_atomic

Progress = Callable[[float, str], None]
Work = Callable[[Progress], dict[str, Any]]  # returns the fields of the finished status: message, ...


def new_status(prefix: str, object_name: str, message: str, **fields: Any) -> dict[str, Any]:
    """A `queued` status with a fresh id `<prefix>-<16 hex>`."""
    now = int(time.time())
    return {
        "id": f"{prefix}-{uuid.uuid4().hex[:16]}", "object": object_name, **fields, "status": "queued",
        "progress": 0.0, "message": message, "error": None, "created_at": now, "updated_at": now,
    }  # fmt: skip


def save_status(folder: Path, status: dict[str, Any]) -> None:
    write_atomic(folder / "status.json", json.dumps({**status, "updated_at": int(time.time())}, default=str))


def read_status(folder: Path, prefix: str, status_id: str) -> dict[str, Any] | None:
    """The status in `folder`, or None for an id that is not `<prefix>-<alphanumerics>` or has no file."""
    if not status_id.startswith(prefix + "-") or not status_id[len(prefix) + 1 :].isalnum():
        return None
    status_file = folder / "status.json"
    return json.loads(status_file.read_text()) if status_file.is_file() else None


def start_in_background(
    folder: Path, status: dict[str, Any], work: Work, lock: threading.Lock, failure_code: str,
    clean_message: Callable[[BaseException], str] | None = None,
) -> None:  # fmt: skip
    """Save the queued status, then run `work` in a daemon thread once `lock` is free."""
    save_status(folder, status)
    args = (folder, status, work, lock, failure_code, clean_message)
    threading.Thread(target=_run, args=args, daemon=True, name=status["id"]).start()


def _run(
    folder: Path, status: dict[str, Any], work: Work, lock: threading.Lock, failure_code: str,
    clean_message: Callable[[BaseException], str] | None,
) -> None:  # fmt: skip
    def progress(fraction: float, message: str) -> None:
        save_status(
            folder, {**status, "status": "running", "progress": round(fraction, 3), "message": message}
        )

    with lock:
        try:
            progress(0.0, "starting")
            done = work(progress)
            save_status(folder, {**status, "status": "succeeded", "progress": 1.0, **done})
        except Exception as err:  # reported in the status, never lost in a thread
            message = clean_message(err) if clean_message else f"{type(err).__name__}: {err}"[:500]
            failure = {"code": error_code(err) or failure_code, "message": message}
            save_status(folder, {**status, "status": "failed", "message": message, "error": failure})
