"""`/api/runs`: a job's training run with its metric series, and its evaluation; `/api/methods`."""

from __future__ import annotations

from fastapi import APIRouter

from tunery.service.api.deps import CurrentProject, SessionDep, SettingsDep
from tunery.service.domain.runs import read_run
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


@router.get("/methods", response_model=list[MethodPublic])
def list_methods(_project: CurrentProject) -> list[MethodPublic]:
    """The fine-tuning methods `tunery.method` accepts (the modules load no torch)."""
    from tunery.config.registry import METHOD_SPECS

    return [MethodPublic(name=m.name, summary=m.summary, mergeable=m.mergeable) for m in METHOD_SPECS]
