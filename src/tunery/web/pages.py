"""The dashboard's pages: server-rendered Jinja2 templates over the API's own route functions.

Every page reads through the same functions the REST API runs (`list_jobs`, `get_version`,
`list_registry`, …), so the dashboard shows exactly what the API answers, per project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tunery.service.api.deps import SessionDep, SettingsDep
from tunery.service.api.routes import datasets, files, jobs, registry, runs
from tunery.service.errors import ApiError
from tunery.web.auth import (
    COOKIE,
    LIFETIME_SECONDS,
    PageProject,
    key_row,
    safe_next,
    secret_of,
    session_cookie,
)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
# Every resource from this server only: the browser refuses anything else, so no page can reach out.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
FINISHED = ("succeeded", "failed", "cancelled")

router = APIRouter(include_in_schema=False)


def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def not_found_page(request: Request, project: str, err: ApiError) -> HTMLResponse:
    return render(request, "error.html", status_code=err.status, project=project, message=err.message)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/jobs", status_code=303)


@router.get("/signin")
def sign_in_page(request: Request, next: str = "/jobs") -> HTMLResponse:
    return render(request, "signin.html", next=safe_next(next), error=None)


@router.post("/signin")
def sign_in(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/jobs",
) -> Response:
    """Check the key once; the browser keeps a signed cookie naming the key's row, never the key."""
    key = key_row(session, api_key) if api_key.strip() else None
    if key is None:
        message = "That API key is not valid. Create one with: tunery keys create --project NAME"
        return render(request, "signin.html", status_code=401, next=safe_next(next), error=message)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE, session_cookie(secret_of(request), key.id), max_age=LIFETIME_SECONDS,
        httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/",
    )  # fmt: skip
    return response


@router.post("/signout")
def sign_out() -> RedirectResponse:
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/datasets")
def datasets_page(request: Request, session: SessionDep, project: PageProject) -> HTMLResponse:
    found = datasets.list_datasets(session, project).data
    return render(request, "datasets.html", project=project, datasets=found)


@router.get("/datasets/{name}/versions/{version}")
def dataset_version_page(
    request: Request, name: str, version: int, session: SessionDep, project: PageProject
) -> HTMLResponse:
    try:
        shown = datasets.get_version(name, version, session, project)
        versions = datasets.list_versions(name, session, project).data
    except ApiError as err:
        return not_found_page(request, project, err)
    return render(request, "dataset.html", project=project, version=shown, versions=versions)


@router.get("/jobs")
def jobs_page(request: Request, session: SessionDep, project: PageProject) -> HTMLResponse:
    listed = jobs.list_jobs(session, project, after=None, limit=100).data
    return render(request, "jobs.html", project=project, jobs=listed)


@router.get("/jobs/new")
def new_job_page(
    request: Request, session: SessionDep, project: PageProject, model: str | None = None
) -> HTMLResponse:
    """The job form; `?model=` fills in the base model."""
    from tunery.config import ModelConfig, TrainConfig
    from tunery.methods import METHODS, get_method

    methods = [(name, get_method(name).SUMMARY) for name in METHODS]
    versions = [
        version
        for dataset in datasets.list_datasets(session, project).data
        for version in reversed(datasets.list_versions(dataset.name, session, project).data)
        if version.file_id
    ]
    uploaded = files.list_files(session, project, purpose="fine-tune", limit=100, after=None).data
    bases = sorted({entry.base_model for entry in registry.list_registry(session, project, None).data})
    return render(
        request, "job_new.html", project=project, methods=methods, versions=versions, files=uploaded,
        bases=bases, model=model or (bases[0] if bases else ModelConfig.model_fields["name"].default),
        train=TrainConfig.model_fields,
    )  # fmt: skip


@router.get("/jobs/{job_id}")
def job_page(
    request: Request, job_id: str, session: SessionDep, project: PageProject, settings: SettingsDep
) -> HTMLResponse:
    try:
        job = jobs.retrieve_job(job_id, session, project)
        checkpoints = jobs.list_checkpoints(job_id, session, project, settings, after=None, limit=100).data
        evaluation = runs.get_evaluation(job_id, session, project, settings)
        run = runs.get_run(job_id, session, project, settings)
    except ApiError as err:
        return not_found_page(request, project, err)
    return render(
        request, "job.html", project=project, job=job, checkpoints=checkpoints, evaluation=evaluation,
        warnings=run.record.get("warnings", []), finished=job.status in FINISHED,
    )  # fmt: skip


@router.get("/models")
def models_page(request: Request, session: SessionDep, project: PageProject) -> HTMLResponse:
    entries = registry.list_registry(session, project, None).data
    return render(request, "models.html", project=project, models=entries)


@router.get("/compare")
def compare_page(
    request: Request,
    session: SessionDep,
    project: PageProject,
    settings: SettingsDep,
) -> HTMLResponse:
    from tunery.web.compare import compare_jobs

    picked = request.query_params.getlist("job")
    listed = jobs.list_jobs(session, project, after=None, limit=100).data
    try:
        comparison = compare_jobs(session, project, settings, picked) if picked else None
    except ApiError as err:
        return not_found_page(request, project, err)
    return render(request, "compare.html", project=project, jobs=listed, picked=picked, comparison=comparison)


@router.get("/playground")
def playground_page(request: Request, session: SessionDep, project: PageProject) -> HTMLResponse:
    entries = registry.list_registry(session, project, None).data
    picked = request.query_params.getlist("model")[:3]
    bases = sorted({entry.base_model for entry in entries})
    chosen_base = next((e.base_model for e in entries if e.id in picked), bases[0] if bases else "")
    return render(
        request, "playground.html", project=project, models=entries, bases=bases, picked=picked,
        chosen_base=chosen_base,
    )  # fmt: skip
