"""What the dashboard's scripts and forms call, under `/ui/`: signed in by the session cookie.

Each action runs the domain function the REST API's route runs (`files.store_upload`,
`jobs.create_job`, `jobs.cancel_job`, `models.delete_model`, `inference.chat`), so validation and
errors are the API's: a job form sent here fails with the very JSON error
`/v1/fine_tuning/jobs` gives for the same body.
"""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from sqlalchemy.orm import Session

from tunery.jobs.lifecycle import shown_status, without_server_paths
from tunery.service.api.deps import DB_INT_MAX, DispatcherDep, SessionDep, SettingsDep, VersionNumber
from tunery.service.api.streaming import as_response
from tunery.service.api.uploads import UPLOAD_BODY, Upload, in_new_session, read_upload
from tunery.service.domain import datasets, exports, files, inference, jobs, models
from tunery.service.domain.lookups import get_job
from tunery.service.domain.references import base_model
from tunery.service.errors import ApiError
from tunery.service.integers import bounded_int
from tunery.service.schemas.datasets import DatasetVersionReport
from tunery.service.schemas.exports import ExportRequest
from tunery.service.schemas.files import FilePublic
from tunery.service.schemas.inference import ChatRequest
from tunery.service.schemas.jobs import JobCreate, JobPublic
from tunery.settings import Settings
from tunery.web.auth import ActionProject, UploaderDep
from tunery.web.live import job_event_stream
from tunery.web.pages import render

router = APIRouter(prefix="/ui", include_in_schema=False)
HISTOGRAM_BINS = 12


@router.post("/files", openapi_extra=UPLOAD_BODY)  # documented for tests/security/test_openapi_fuzz.py
async def upload(request: Request, uploader: UploaderDep, settings: SettingsDep) -> HTMLResponse:
    """An upload from the Datasets page; answers with the rendered validation report (400 when refused).

    The session is checked before the body is read (`tunery.service.api.uploads`)."""
    form = await read_upload(request)
    try:
        uploader.check_form(form.form)
        shown = await in_new_session(request, upload_shown, uploader.project, settings, form)
    except ApiError as err:
        if err.status in (401, 403):
            raise
        report = err.extra.get("report")
        return render(
            request, "_upload_result.html", status_code=err.status, error=err.message, report=report
        )
    finally:
        await form.form.close()
    stored, version = shown
    return render(
        request, "_upload_result.html", error=None, file=stored, version=version, report=version.report
    )


def upload_shown(
    session: Session, project: str, settings: Settings, form: Upload
) -> tuple[FilePublic, DatasetVersionReport]:
    stored = files.store_upload(session, project, settings, form.file, form.filename, "fine-tune")
    return FilePublic.of(stored), DatasetVersionReport.of(
        datasets.version_of_upload(session, project, stored)
    )


@router.get("/datasets/{name}/versions/{version}/lengths")
def token_lengths(
    request: Request,
    name: str,
    version: VersionNumber,
    session: SessionDep,
    project: ActionProject,
    settings: SettingsDep,
    model: str = "smollm2-135m-instruct",
    max_length: Annotated[int, Query(ge=8, le=DB_INT_MAX)] = 1024,
) -> HTMLResponse:
    """A token-length histogram of a dataset version under a model's tokenizer and chat template."""
    lengths = datasets.token_lengths(session, project, settings, name, version, model, max_length)
    return render(
        request, "_lengths.html", model=model, max_length=max_length, bins=histogram(lengths),
        over=sum(length > max_length for length in lengths), rows=len(lengths),
    )  # fmt: skip


def histogram(values: list[int], bins: int = HISTOGRAM_BINS) -> list[dict]:
    """[{low, high, count}] over equal-width integer bins from the shortest to the longest value."""
    if not values:
        return []
    low, high = min(values), max(values)
    width = max(1, -(-(high - low + 1) // bins))
    counts: dict[int, int] = {}
    for value in values:
        counts[(value - low) // width] = counts.get((value - low) // width, 0) + 1
    return [
        {"low": low + i * width, "high": low + (i + 1) * width - 1, "count": counts.get(i, 0)}
        for i in range(max(counts) + 1)
    ]


@router.post("/jobs", response_model=JobPublic)
def create_job(
    body: JobCreate,
    session: SessionDep,
    project: ActionProject,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> JobPublic:
    """The New job form's JSON, exactly the body `POST /v1/fine_tuning/jobs` takes."""
    return JobPublic.of(jobs.create_job(session, project, body, settings, dispatcher))


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, session: SessionDep, project: ActionProject) -> JobPublic:
    return JobPublic.of(jobs.cancel_job(session, project, job_id))


@router.get("/jobs/statuses")
def job_statuses(session: SessionDep, project: ActionProject) -> list[dict]:
    """The Jobs page's live column: id, status and model of the newest 100 jobs."""
    listed, _ = jobs.list_jobs(session, project, limit=100)
    return [{"id": j.id, "status": shown_status(j), "fine_tuned_model": j.fine_tuned_model} for j in listed]


@router.get("/jobs/{job_id}/stream")
async def stream_job(job_id: str, request: Request, project: ActionProject) -> StreamingResponse:
    """Server-sent events: every event of the job, oldest first, then live ones until it finishes."""
    after = last_event_id(request)
    with request.app.state.sessions() as session:
        get_job(session, project, job_id)  # 404 before the stream starts
    return StreamingResponse(
        job_event_stream(request, job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def last_event_id(request: Request) -> int:
    """The event a reconnecting EventSource saw last (the seq we sent as its id); 0: none."""
    sent = request.headers.get("last-event-id", "").strip()
    after = bounded_int(sent or "0")
    if after is None:
        raise ApiError(
            400, f"Last-Event-ID '{sent[:40]}' is not an event id this stream sent (a number)",
            code="invalid_last_event_id", param="Last-Event-ID",
        )  # fmt: skip
    return after


@router.get("/estimate")
def estimate(model: str, session: SessionDep, project: ActionProject, settings: SettingsDep) -> list[dict]:
    """Trainable parameters of every method on `model` (shapes only, no weights loaded)."""
    from tunery.models import ModelNotFoundError

    loads = base_model(session, project, settings, model)
    try:
        return _estimates(loads)
    except (ModelNotFoundError, OSError, ValueError) as err:
        message = f"cannot estimate for '{model}': {str(err).splitlines()[0]}"
        raise ApiError(400, without_server_paths(message), code="model_not_found", param="model") from None


@functools.lru_cache(maxsize=8)
def _estimates(model: str) -> list[dict]:
    from tunery.methods.estimate import estimate_methods

    return [
        {"method": row.method, "trainable": row.trainable, "total": row.total, "percent": row.percent,
         "memory_gb": row.memory_gb, "note": row.note}
        for row in estimate_methods(model)
    ]  # fmt: skip


@router.get("/models/export")
def export_adapter(id: str, session: SessionDep, project: ActionProject, settings: SettingsDep):
    """The model's adapter folder as a zip (what `tunery export RUN --adapter OUT` writes)."""
    archive = models.adapter_zip(session, project, settings, id)
    filename = id.replace(":", "_").replace("/", "_") + "-adapter.zip"
    return StreamingResponse(
        iter([archive]),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post("/models/export-gguf", status_code=202)
def export_gguf(
    id: str, body: ExportRequest, session: SessionDep, project: ActionProject, settings: SettingsDep
) -> dict:
    """The model page's "Export GGUF" button: the API's background export (`exports.start_export`)."""
    return exports.start_export(session, project, settings, id, body.format, body.quant)


@router.get("/models/exports/{export_id}")
def export_status(
    id: str, export_id: str, session: SessionDep, project: ActionProject, settings: SettingsDep
) -> dict:
    return exports.read_export(session, project, settings, id, export_id)


@router.get("/models/exports/{export_id}/file")
def export_download(
    id: str, export_id: str, session: SessionDep, project: ActionProject, settings: SettingsDep
):
    from fastapi.responses import FileResponse

    path = exports.export_file(session, project, settings, id, export_id)
    filename = id.replace(":", "_").replace("/", "_") + ".gguf"
    return FileResponse(path, media_type="application/octet-stream", filename=filename)


@router.post("/models/delete")
def delete_model(id: Annotated[str, Form()], session: SessionDep, project: ActionProject) -> RedirectResponse:
    models.delete_model(session, project, id)
    return RedirectResponse("/models", status_code=303)


@router.post("/chat")
async def chat(body: ChatRequest, request: Request, project: ActionProject):
    """The Playground: `/v1/chat/completions` for the signed-in project (streams when asked)."""
    return as_response(await inference.chat(request.app.state, project, body))
