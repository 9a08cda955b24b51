"""A registered model exported as GGUF in the background, with its progress in a small status file.

    status = start_export(session, project, settings, model_id, ExportRequest(format="gguf", quant="q8_0"))
    read_export(session, project, settings, model_id, status["id"])   # progress 0..1, then "succeeded"

Why a thread and a file, not a job: an export is minutes of CPU work with nothing to resume, so it
needs neither the job runner's lease nor its child process. Exports run one at a time (each holds
a whole model in memory); the status file (`artifacts/exports/<id>/status.json`, written
atomically) is what the API, the dashboard and a restarted server read. An export a restart cut
short stays "running" with a stale `updated_at`; start a new one.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tunery.errors import error_code
from tunery.files import write_atomic
from tunery.service.domain.lookups import get_model
from tunery.service.errors import ApiError, not_found
from tunery.settings import Settings

FORMATS = ("gguf",)
ONE_AT_A_TIME = threading.Lock()


def export_folder(settings: Settings, export_id: str) -> Path:
    return settings.artifacts / "exports" / export_id


def start_export(
    session: Session, project: str, settings: Settings, model_id: str, format: str, quant: str
) -> dict[str, Any]:
    """Check the request, write a `queued` status and start the export in a background thread."""
    from tunery.gguf_export import QUANTS

    model = get_model(session, project, model_id)
    if format not in FORMATS:
        raise ApiError(
            400,
            f"format {format!r} is not one of {', '.join(FORMATS)}",
            code="unsupported_format",
            param="format",
        )
    if quant not in QUANTS:
        raise ApiError(
            400, f"quant {quant!r} is not one of {', '.join(QUANTS)}", code="unsupported_quant", param="quant"
        )
    run_dir = (settings.artifacts / model.path).parent
    if not (run_dir / "run.json").is_file():
        raise ApiError(
            404, f"the run of {model_id} is no longer on disk ({run_dir.name})", code="artifact_missing"
        )
    export_id = f"export-{uuid.uuid4().hex[:16]}"
    status = {
        "id": export_id, "object": "model.export", "model": model_id, "project": project, "format": format,
        "quant": quant, "status": "queued", "progress": 0.0, "message": "waiting for other exports", "error": None,
        "file": None, "created_at": int(time.time()), "updated_at": int(time.time()),
    }  # fmt: skip
    folder = export_folder(settings, export_id)
    save_status(folder, status)
    threading.Thread(target=run_export, args=(run_dir, folder, status), daemon=True, name=export_id).start()
    return status


def run_export(run_dir: Path, folder: Path, status: dict[str, Any]) -> None:
    """The background half: export, reporting progress; any failure ends as `failed` with its code."""
    from tunery.gguf_export import export_gguf

    def progress(fraction: float, message: str) -> None:
        save_status(
            folder, {**status, "status": "running", "progress": round(fraction, 3), "message": message}
        )

    with ONE_AT_A_TIME:
        try:
            progress(0.0, "starting")
            result = export_gguf(
                run_dir, folder / "model.gguf", quant=status["quant"], ollama=True, progress=progress
            )
            done = {"status": "succeeded", "progress": 1.0, "message": f"{result.tensors} tensors written"}
            save_status(folder, {**status, **done, "file": result.path.name})
        except Exception as err:  # reported in the status, never lost in a thread
            failure = {
                "code": error_code(err) or "export_failed",
                "message": f"{type(err).__name__}: {err}"[:500],
            }
            save_status(
                folder, {**status, "status": "failed", "message": failure["message"], "error": failure}
            )


def save_status(folder: Path, status: dict[str, Any]) -> None:
    write_atomic(folder / "status.json", json.dumps({**status, "updated_at": int(time.time())}))


def read_export(
    session: Session, project: str, settings: Settings, model_id: str, export_id: str
) -> dict[str, Any]:
    """The export's status; another project's or another model's export is a 404 like a missing one."""
    get_model(session, project, model_id)
    if not export_id.startswith("export-") or not export_id[7:].isalnum():
        raise not_found("model.export", export_id)
    status_file = export_folder(settings, export_id) / "status.json"
    status = json.loads(status_file.read_text()) if status_file.is_file() else {}
    if status.get("model") != model_id or status.get("project") != project:
        raise not_found("model.export", export_id)
    return status


def export_file(session: Session, project: str, settings: Settings, model_id: str, export_id: str) -> Path:
    """The finished GGUF file of an export (409 while it is still being written)."""
    status = read_export(session, project, settings, model_id, export_id)
    if status["status"] != "succeeded":
        raise ApiError(
            409, f"export {export_id} is {status['status']}, not finished", code="export_not_ready"
        )
    return export_folder(settings, export_id) / status["file"]
