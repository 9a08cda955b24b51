"""A registered model exported as GGUF in the background, with its progress in a small status file.

    status = start_export(session, project, settings, model_id, ExportRequest(format="gguf", quant="q8_0"))
    read_export(session, project, settings, model_id, status["id"])   # progress 0..1, then "succeeded"

A background task (background.py: a thread, one export at a time, a status file at
`artifacts/exports/<id>/status.json`). An export a restart cut short stays "running"; start another.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tunery.service.domain.background import Progress, new_status, read_status, start_in_background
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
    status = new_status("export", "model.export", "waiting for other exports", model=model_id, project=project,
                        format=format, quant=quant, file=None)  # fmt: skip

    def work(progress: Progress) -> dict[str, Any]:
        from tunery.gguf_export import export_gguf

        folder = export_folder(settings, status["id"])
        result = export_gguf(run_dir, folder / "model.gguf", quant=quant, ollama=True, progress=progress)
        return {"message": f"{result.tensors} tensors written", "file": result.path.name}

    start_in_background(export_folder(settings, status["id"]), status, work, ONE_AT_A_TIME, "export_failed")
    return status


def read_export(
    session: Session, project: str, settings: Settings, model_id: str, export_id: str
) -> dict[str, Any]:
    """The export's status; another project's or another model's export is a 404 like a missing one."""
    get_model(session, project, model_id)
    status = read_status(export_folder(settings, export_id), "export", export_id) or {}
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
