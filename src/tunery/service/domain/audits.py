"""A finished job's per-row loss audit (`tunery data audit`), run in the background, its result kept as JSON.

    status = start_audit(session, project, settings, job_id)            # "queued"
    read_audit(session, project, settings, job_id, status["id"])        # then "running", "succeeded"
    audit_rows(session, project, settings, job_id, audit_id, flagged_only=True)   # worst first

A background task like a GGUF export (background.py: a thread, one audit at a time, a status
file). Each lives in the job's run directory (`<run>/audits/<id>/`: status.json and
the audit's own files, `evaluate/audit_files.py`), so another project's job never shows it and
deleting the run deletes its audits. An audit a restart cut short stays "running"; start another.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tunery.service.domain.background import Progress, new_status, read_status, start_in_background
from tunery.service.domain.lookups import get_job
from tunery.service.errors import ApiError, not_found
from tunery.settings import Settings
from tunery.store.tables import Job

ONE_AT_A_TIME = threading.Lock()
ROWS_LIMIT = 1000  # rows one answer may hold


def audits_folder(settings: Settings, job: Job) -> Path:
    return settings.artifacts / job.run_dir / "audits"


def start_audit(
    session: Session, project: str, settings: Settings, job_id: str, batch_tokens: int | None = None
) -> dict[str, Any]:
    """Check the job has a finished run, write a `queued` status and audit it in a background thread."""
    job = get_job(session, project, job_id)
    if job.status != "succeeded":
        raise ApiError(
            409, f"job {job_id} is {job.status}; audit it once it has succeeded", code="job_not_finished"
        )
    run_dir = settings.artifacts / job.run_dir
    if not (run_dir / "run.json").is_file():
        raise ApiError(404, f"the run of {job_id} is no longer on disk", code="artifact_missing")
    status = new_status("audit", "run.audit", "waiting for other audits", job=job_id, project=project,
                        summary=None, batch_tokens=batch_tokens)  # fmt: skip

    def work(progress: Progress) -> dict[str, Any]:
        from tunery.evaluate.audit import audit_run

        audit = audit_run(run_dir, out=folder, batch_tokens=batch_tokens, progress=progress)
        summary = {**audit.summary, "run": run_dir.name}  # no server paths in answers
        summary["data"] = [{**source, "path": Path(source["path"]).name} for source in summary["data"]]
        return {"message": f"{summary['flagged']} of {summary['rows']} rows flagged", "summary": summary}

    folder = audits_folder(settings, job) / status["id"]
    start_in_background(
        folder, status, work, ONE_AT_A_TIME, "audit_failed", lambda err: _without_paths(err, run_dir)
    )
    return status


def read_audit(
    session: Session, project: str, settings: Settings, job_id: str, audit_id: str
) -> dict[str, Any]:
    """The audit's status (with its summary once done); another project's job or a bad id is a 404."""
    job = get_job(session, project, job_id)
    status = read_status(audits_folder(settings, job) / audit_id, "audit", audit_id) or {}
    if status.get("job") != job_id or status.get("project") != project:
        raise not_found("run.audit", audit_id)
    return status


def list_audits(session: Session, project: str, settings: Settings, job_id: str) -> list[dict[str, Any]]:
    """The job's audits, newest first."""
    job = get_job(session, project, job_id)
    found = []
    for status_file in audits_folder(settings, job).glob("audit-*/status.json"):
        status = json.loads(status_file.read_text())
        if status.get("job") == job_id and status.get("project") == project:
            found.append(status)
    return sorted(found, key=lambda status: (status["created_at"], status["id"]), reverse=True)


def audit_rows(
    session: Session, project: str, settings: Settings, job_id: str, audit_id: str,
    flagged_only: bool = False, limit: int = 100,
) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
    """Up to `limit` audited rows, worst first, and whether more follow (409 until the audit is done)."""
    status = read_audit(session, project, settings, job_id, audit_id)
    if status["status"] != "succeeded":
        raise ApiError(409, f"audit {audit_id} is {status['status']}, not finished", code="audit_not_ready")
    folder = audits_folder(settings, get_job(session, project, job_id)) / audit_id
    rows: list[dict[str, Any]] = []
    with (folder / "rows.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if flagged_only and not row["flags"]:
                break  # flagged rows come first
            if len(rows) == limit:
                return rows, True
            rows.append({**row, "source": Path(row["source"]).name})
    return rows, False


def _without_paths(err: BaseException, run_dir: Path) -> str:
    """The error's message with the server's folders left out (the run is named by its folder)."""
    message = f"{type(err).__name__}: {err}"[:500]
    return message.replace(str(run_dir.parent) + "/", "").replace(str(run_dir.parent.parent), "…")
