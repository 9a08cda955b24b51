"""Jobs side by side for the Compare page: `tunery.evaluate.compare_runs` on their run directories.

compare_jobs(session, "team-a", settings, ["ftjob-a", "ftjob-b"])
# {"names": [...], "config_differences": {"lora.r": [4, 8]}, "metrics": {...}, "curves": {...}}
"""

from __future__ import annotations

from tunery.service.domain.lookups import get_job
from tunery.service.errors import ApiError
from tunery.service.public import public_value
from tunery.settings import Settings

CURVES = ("loss", "val_loss")


def compare_jobs(session, project: str, settings: Settings, job_ids: list[str]) -> dict:
    """Config keys that differ, metrics, and every run's loss curves ([[step, value], ...] per job)."""
    from tunery.evaluate.compare_runs import compare_runs
    from tunery.run import Run

    run_dirs, models = [], set()
    for job_id in dict.fromkeys(job_ids):
        job = get_job(session, project, job_id)  # 404 for another project's job, as in the API
        run_dir = settings.artifacts / job.run_dir
        if not (run_dir / "run.json").exists():
            raise ApiError(400, f"job {job_id} has not started training yet: nothing to compare")
        run_dirs.append(run_dir)
        models.add(job.model)
    comparison = compare_runs(run_dirs)
    curves = {
        name: {
            series: [[row["step"], row[series]] for row in Run.open(path).history() if series in row]
            for series in CURVES
        }
        for name, path in zip(comparison.names, run_dirs, strict=True)
    }
    return {
        "names": comparison.names,
        "config_differences": public_value(comparison.config_differences, keep=models),
        "metrics": comparison.metrics,
        "curves": curves,
    }
