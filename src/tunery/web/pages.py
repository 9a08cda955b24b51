"""The dashboard's pages: server-rendered Jinja2 templates over the service's domain functions.

Every page reads through the same functions the REST API's routes call (`tunery.service.domain`:
`jobs.list_jobs`, `datasets.get_version`, `models.list_models`, …) and shows the API's own
schemas, so the dashboard shows exactly what the API answers, per project.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tunery.service.api.deps import DB_INT_MAX, SessionDep, SettingsDep, VersionNumber
from tunery.service.domain import datasets, files, jobs, models
from tunery.service.domain.lookups import get_job
from tunery.service.domain.runs import read_run
from tunery.service.errors import ApiError
from tunery.service.integers import bounded_int
from tunery.service.public import public_value
from tunery.service.schemas.datasets import DatasetPublic, DatasetVersionPublic, DatasetVersionReport
from tunery.service.schemas.files import FilePublic
from tunery.service.schemas.jobs import CheckpointPublic, JobPublic
from tunery.service.schemas.models import ModelLineage
from tunery.service.schemas.runs import Evaluation
from tunery.web.auth import (
    COOKIE,
    CSRF_FIELD,
    LIFETIME_SECONDS,
    SIGN_IN_COOKIE,
    ActionProject,
    PageProject,
    check_csrf,
    check_same_origin,
    check_sign_in_form,
    end_session,
    key_of_sign_in,
    safe_next,
    secret_of,
    sent_csrf_token,
    sign_in_token,
    signed_in,
    start_session,
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
    """A page; its forms and scripts get the session's CSRF token (a meta tag and hidden fields)."""
    context.setdefault("csrf_token", getattr(request.state, "csrf_token", ""))
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def not_found_page(request: Request, project: str, err: ApiError) -> HTMLResponse:
    return render(request, "error.html", status_code=err.status, project=project, message=err.message)


def recent_jobs(session, project: str) -> list[JobPublic]:
    """The newest 100 jobs, as the Jobs and Compare pages list them."""
    return [JobPublic.of(job) for job in jobs.list_jobs(session, project, limit=100)[0]]


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/jobs", status_code=303)


@router.get("/signin")
def sign_in_page(request: Request, next: str = "/jobs") -> HTMLResponse:
    return sign_in_form(request, next, error=None)


def sign_in_form(request: Request, next_path: str, error: str | None, status_code: int = 200) -> HTMLResponse:
    """The form with a fresh nonce cookie and its HMAC in a hidden field: a sign-in must come from here."""
    nonce = secrets.token_urlsafe(24)
    token = sign_in_token(secret_of(request), nonce)
    response = render(
        request,
        "signin.html",
        status_code=status_code,
        next=safe_next(next_path),
        error=error,
        csrf_token=token,
    )
    response.set_cookie(
        SIGN_IN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path="/signin",
    )  # fmt: skip
    return response


@router.post("/signin")
def sign_in(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/jobs",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    """Check the key once; the browser keeps a session cookie naming a server-side session, never the key."""
    try:
        check_sign_in_form(request, csrf_token)
    except ApiError as err:
        return sign_in_form(request, next, error=err.message, status_code=err.status)
    key = key_of_sign_in(session, api_key)
    if key is None:
        message = "That API key is not valid. Create one with: tunery keys create --project NAME"
        return sign_in_form(request, next, error=message, status_code=401)
    token = start_session(session, key.id)
    session.commit()
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE, token, max_age=LIFETIME_SECONDS, httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path="/",
    )  # fmt: skip
    response.delete_cookie(SIGN_IN_COOKIE, path="/signin")
    return response


@router.post("/signout")
def sign_out(request: Request, sent: Annotated[str | None, Depends(sent_csrf_token)]) -> Response:
    """End the session in the table, not just in this browser: the old cookie opens nothing afterwards."""
    check_same_origin(request)
    token = request.cookies.get(COOKIE)
    with request.app.state.sessions.begin() as db:
        found = signed_in(db, token)
        if found is not None:
            check_csrf(found[0].csrf_token, sent)
            end_session(db, token)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/datasets")
def datasets_page(request: Request, session: SessionDep, project: PageProject) -> HTMLResponse:
    found = [
        DatasetPublic(name=d.name, latest=DatasetVersionPublic.of(d.latest), versions=d.versions)
        for d in datasets.list_datasets(session, project)
    ]
    return render(request, "datasets.html", project=project, datasets=found)


@router.get("/datasets/{name}/versions/{version}")
def dataset_version_page(
    request: Request, name: str, version: str, session: SessionDep, project: PageProject
) -> HTMLResponse:
    number = bounded_int(version, least=1)
    try:
        if number is None:
            raise ApiError(404, f"dataset '{name}' has no version '{version[:40]}'", code="dataset_not_found")
        shown = DatasetVersionReport.of(datasets.get_version(session, project, name, number))
        versions = [DatasetVersionPublic.of(v) for v in datasets.list_versions(session, project, name)]
    except ApiError as err:
        return not_found_page(request, project, err)
    return render(request, "dataset.html", project=project, version=shown, versions=versions)


@router.get("/ui/datasets/{name}/versions/{version}/preview")
def dataset_preview(
    request: Request,
    name: str,
    version: VersionNumber,
    session: SessionDep,
    project: ActionProject,
    settings: SettingsDep,
    model: str = "smollm2-135m-instruct",
    rows: Annotated[int, Query(le=DB_INT_MAX)] = 5,
) -> HTMLResponse:
    """The dataset page's mask preview: `GET /api/datasets/{name}/preview`'s domain call, drawn as HTML."""
    from tunery.data.preview import preview_html

    rows = min(max(rows, 1), datasets.PREVIEW_ROWS_MAX)
    _, shown = datasets.preview_version(session, project, settings, name, model, rows, version)
    return HTMLResponse(preview_html(shown, page=False), headers=SECURITY_HEADERS)


@router.get("/jobs")
def jobs_page(request: Request, session: SessionDep, project: PageProject) -> HTMLResponse:
    return render(request, "jobs.html", project=project, jobs=recent_jobs(session, project))


@router.get("/jobs/new")
def new_job_page(
    request: Request, session: SessionDep, project: PageProject, model: str | None = None
) -> HTMLResponse:
    """The job form; `?model=` fills in the base model."""
    from typing import get_args

    from tunery.config import ModelConfig, PreferenceConfig, TrainConfig
    from tunery.config.registry import METHOD_SPECS

    methods = [(spec.name, spec.summary) for spec in METHOD_SPECS]
    versions = [
        DatasetVersionPublic.of(version)
        for dataset in datasets.list_datasets(session, project)
        for version in reversed(datasets.list_versions(session, project, dataset.name))
        if version.file_id
    ]
    uploaded = [FilePublic.of(f) for f in files.list_files(session, project, purpose="fine-tune")[0]]
    bases = sorted({entry.base_model for entry in models.list_models(session, project)})
    return render(
        request, "job_new.html", project=project, methods=methods, versions=versions, files=uploaded,
        bases=bases, model=model or (bases[0] if bases else ModelConfig.model_fields["name"].default),
        train=TrainConfig.model_fields, losses=get_args(PreferenceConfig.model_fields["loss"].annotation),
        preference=PreferenceConfig.model_fields,
    )  # fmt: skip


@router.get("/jobs/{job_id}")
def job_page(
    request: Request, job_id: str, session: SessionDep, project: PageProject, settings: SettingsDep
) -> HTMLResponse:
    try:
        job = JobPublic.of(get_job(session, project, job_id))
        saved, _ = jobs.list_checkpoints(session, project, settings, job_id, limit=100)
        run = read_run(session, project, settings, job_id)
    except ApiError as err:
        return not_found_page(request, project, err)
    checkpoints = [CheckpointPublic.of(c.row, c.model, c.on_disk) for c in saved]
    return render(
        request, "job.html", project=project, job=job, checkpoints=checkpoints, evaluation=Evaluation.of(run),
        warnings=public_value(run.record.get("warnings", [])), finished=job.status in FINISHED,
        auto=run.record.get("auto") or {},  # train.*: auto choices and the lr range test (training/auto.py)
    )  # fmt: skip


@router.get("/models")
def models_page(request: Request, session: SessionDep, project: PageProject) -> HTMLResponse:
    entries = [ModelLineage.of(m) for m in models.list_models(session, project)]
    from tunery.gguf_export import QUANTS

    return render(request, "models.html", project=project, models=entries, gguf_quants=list(QUANTS))


@router.get("/compare")
def compare_page(
    request: Request,
    session: SessionDep,
    project: PageProject,
    settings: SettingsDep,
) -> HTMLResponse:
    from tunery.web.compare import compare_jobs

    picked = request.query_params.getlist("job")
    listed = recent_jobs(session, project)
    try:
        comparison = compare_jobs(session, project, settings, picked) if picked else None
    except ApiError as err:
        return not_found_page(request, project, err)
    return render(request, "compare.html", project=project, jobs=listed, picked=picked, comparison=comparison)


@router.get("/playground")
def playground_page(request: Request, session: SessionDep, project: PageProject) -> HTMLResponse:
    entries = [ModelLineage.of(m) for m in models.list_models(session, project)]
    picked = request.query_params.getlist("model")[:3]
    bases = sorted({entry.base_model for entry in entries})
    chosen_base = next((e.base_model for e in entries if e.id in picked), bases[0] if bases else "")
    return render(
        request, "playground.html", project=project, models=entries, bases=bases, picked=picked,
        chosen_base=chosen_base,
    )  # fmt: skip


@router.get("/jobs/{job_id}/audit")
def job_audit_page(
    request: Request, job_id: str, session: SessionDep, project: PageProject, settings: SettingsDep
) -> HTMLResponse:
    """The job's newest per-row loss audit: its flagged rows, worst first, and a button to run one."""
    from tunery.service.domain import audits

    try:
        job = JobPublic.of(get_job(session, project, job_id))
        found = audits.list_audits(session, project, settings, job_id)
        latest = found[0] if found else None
        rows = []
        if latest is not None and latest["status"] == "succeeded":
            rows = audits.audit_rows(session, project, settings, job_id, latest["id"], True, 500)[0]
    except ApiError as err:
        return not_found_page(request, project, err)
    return render(
        request, "audit.html", project=project, job=job, audit=latest, rows=rows,
        can_start=job.status == "succeeded" and (latest is None or latest["status"] in FINISHED),
    )  # fmt: skip


@router.post("/ui/jobs/{job_id}/audit")
def start_job_audit(
    job_id: str, session: SessionDep, project: ActionProject, settings: SettingsDep
) -> RedirectResponse:
    """The audit page's button: the API's background audit (`audits.start_audit`), then back to the page."""
    from tunery.service.domain import audits

    audits.start_audit(session, project, settings, job_id)
    return RedirectResponse(f"/jobs/{job_id}/audit", status_code=303)
