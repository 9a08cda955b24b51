"""`/api/runs`: a job's training run with its metric series, and its evaluation; `/api/methods`."""

from __future__ import annotations

import json

from fastapi import APIRouter

from tunery.service.api.deps import CurrentProject, SessionDep, SettingsDep
from tunery.service.api.routes.jobs import get_job
from tunery.service.schemas.runs import Evaluation, MethodPublic, RunPublic

router = APIRouter(prefix="/api", tags=["runs"])


def _read(settings, job) -> tuple[dict, list[dict]]:
    from tunery.run import Run

    run_dir = settings.artifacts / job.run_dir
    record = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    return record, Run(run_dir).history()  # only complete lines: training may be writing the next


@router.get("/runs/{job_id}", response_model=RunPublic)
def get_run(job_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep) -> RunPublic:
    """The run's record (run.json) and every logged metric as a series of [step, value]."""
    job = get_job(session, project, job_id)
    record, rows = _read(settings, job)
    series: dict[str, list[list[float]]] = {}
    for row in rows:
        for name, value in row.items():
            if name not in ("step", "epoch") and isinstance(value, int | float):
                series.setdefault(name, []).append([row.get("step", 0), value])
    return RunPublic(
        job_id=job.id, status=job.status, artifact=job.run_dir, record=record, series=series,
        attempts=job.attempts, pid=job.pid,
    )  # fmt: skip


@router.get("/runs/{job_id}/evaluation", response_model=Evaluation)
def get_evaluation(
    job_id: str, session: SessionDep, project: CurrentProject, settings: SettingsDep
) -> Evaluation:
    """Validation results of the run: the losses during training and the final metrics."""
    job = get_job(session, project, job_id)
    record, rows = _read(settings, job)
    return Evaluation(
        job_id=job.id, validation=[r for r in rows if "val_loss" in r], metrics=record.get("metrics", {})
    )


@router.get("/methods", response_model=list[MethodPublic])
def list_methods(_project: CurrentProject) -> list[MethodPublic]:
    """The fine-tuning methods `tunery.method` accepts (the modules load no torch)."""
    from tunery.methods import METHODS, get_method

    return [
        MethodPublic(name=name, summary=get_method(name).SUMMARY, mergeable=get_method(name).MERGEABLE)
        for name in METHODS
    ]
