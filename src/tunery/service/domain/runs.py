"""A job's training run as its files hold it: the run record (run.json) and the metric history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from tunery.service.domain.lookups import get_job
from tunery.settings import Settings
from tunery.store.tables import Job


@dataclass(frozen=True)
class RunFiles:
    job: Job
    record: dict[str, Any]  # run.json; {} before training starts
    history: list[dict[str, Any]]  # one row per logged step

    def series(self) -> dict[str, list[list[float]]]:
        """Every numeric metric as [[step, value], ...] by name."""
        found: dict[str, list[list[float]]] = {}
        for row in self.history:
            for name, value in row.items():
                if name not in ("step", "epoch") and isinstance(value, int | float):
                    found.setdefault(name, []).append([row.get("step", 0), value])
        return found

    def validation(self) -> list[dict[str, Any]]:
        return [row for row in self.history if "val_loss" in row]


def read_run(session: Session, project: str, settings: Settings, job_id: str) -> RunFiles:
    """The project's job and what its run directory holds so far (404 for another project's job)."""
    from tunery.run import Run

    job = get_job(session, project, job_id)
    run_dir = settings.artifacts / job.run_dir
    record = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    return RunFiles(job, record, Run(run_dir).history())  # only complete lines: training may be writing
