"""`/api/runs`: a job's training run with its metric series, its evaluation and its per-row audits; `/api/methods`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tunery.service.api.deps import CurrentProject, SessionDep, SettingsDep
from tunery.service.domain import audits
from tunery.service.domain.runs import read_run
from tunery.service.schemas.audits import AuditRequest, AuditRows, AuditStatus
from tunery.service.schemas.runs import Evaluation, MethodPublic, RunPublic

router = APIRouter(prefix="/api", tags=["runs"])


@router.get("/runs/{job_id}", response_model=RunPublic)
def get_run(job_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep) -> RunPublic:
    """The run's record (run.json) and every logged metric as a series of [step, value]."""
    return RunPublic.of(read_run(session, project, settings, job_id))


@router.get("/runs/{job_id}/evaluation", response_model=Evaluation)
def get_evaluation(
    job_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> Evaluation:
    """Validation results of the run: the losses during training and the final metrics."""
    return Evaluation.of(read_run(session, project, settings, job_id))


@router.post("/runs/{job_id}/audit", response_model=AuditStatus, status_code=202)
def start_audit(
    job_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep,
    request: AuditRequest | None = None,
) -> AuditStatus:  # fmt: skip
    """Audit every row of the job's data under the tuned and the base model, in the background."""
    batch_tokens = request.batch_tokens if request else None
    return AuditStatus(**audits.start_audit(session, project, settings, job_id, batch_tokens))


@router.get("/runs/{job_id}/audits", response_model=list[AuditStatus])
def list_audits(
    job_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> list[AuditStatus]:
    """The job's audits, newest first."""
    return [AuditStatus(**status) for status in audits.list_audits(session, project, settings, job_id)]


@router.get("/runs/{job_id}/audits/{audit_id}", response_model=AuditStatus)
def get_audit(
    job_id: str, audit_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> AuditStatus:
    return AuditStatus(**audits.read_audit(session, project, settings, job_id, audit_id))


@router.get("/runs/{job_id}/audits/{audit_id}/rows", response_model=AuditRows)
def get_audit_rows(
    job_id: str, audit_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep,
    flagged: bool = False, limit: Annotated[int, Query(ge=1, le=audits.ROWS_LIMIT)] = 100,
) -> AuditRows:  # fmt: skip
    """The audited rows, worst first (`flagged=true`: only the flagged ones); 409 until the audit is done."""
    rows, more = audits.audit_rows(session, project, settings, job_id, audit_id, flagged, limit)
    return AuditRows(data=rows, has_more=more)


@router.get("/methods", response_model=list[MethodPublic])
def list_methods(_project: CurrentProject) -> list[MethodPublic]:
    """The fine-tuning methods `tunery.method` accepts (the modules load no torch)."""
    from tunery.config.registry import METHOD_SPECS

    return [MethodPublic(name=m.name, summary=m.summary, mergeable=m.mergeable) for m in METHOD_SPECS]
