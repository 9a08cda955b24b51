"""kill -9 of the training process at five random (seeded) points of one job.

After every kill the runner restarts the training from its newest complete checkpoint; the job
must succeed with the adapter an uninterrupted run makes, and each kill may cost at most one
checkpoint interval of steps. The figures are printed (`pytest -s`) for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import httpx2
import pytest
import torch
from safetensors.torch import load_file

from tests.service.conftest import Service, events_of, gone, start_tiny_job, straight_run, wait_for
from tunery.training.checkpoint import latest_checkpoint

STEPS, EVERY, KILLS, SEED = 60, 10, 5, 20261125


def last_logged_step(metrics: Path, since: int = 0) -> int:
    """The newest training step in metrics.jsonl, counting only lines from byte `since` on."""
    if not metrics.exists():
        return 0
    text = metrics.read_bytes()[since:].decode()
    rows = [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]
    return max((row["step"] for row in rows if "loss" in row), default=0)


@pytest.fixture
def service(tmp_path):
    running = Service(tmp_path / "home", {"TUNERY_MAX_ATTEMPTS": str(KILLS + 2)})
    running.home.mkdir()
    yield running.start()
    running.stop()


@pytest.mark.slow
def test_kill_9_at_five_random_points_costs_at_most_one_checkpoint_interval_each(
    service, train_file, tiny_model_dir, tmp_path
):
    client, job_id, config = start_tiny_job(service, train_file, tiny_model_dir, STEPS, EVERY)
    straight = straight_run(config, tmp_path / "straight")
    run_dir = service.home / "service" / "artifacts" / "jobs" / job_id
    metrics = run_dir / "metrics.jsonl"
    headers = {"Authorization": f"Bearer {client.api_key}"}

    def training_pid(previous: int | None) -> int | None:
        pid = httpx2.get(f"{service.url}/api/runs/{job_id}", headers=headers).json()["pid"]
        return pid if pid and pid != previous else None

    points = sorted(random.Random(SEED).sample(range(2, STEPS - 2), KILLS))
    pid, lost = None, []
    for point in points:
        pid = wait_for(
            lambda previous=pid: training_pid(previous), 120, interval=0.05, what="a training process"
        )
        start = metrics.stat().st_size if metrics.exists() else 0
        wait_for(
            lambda s=start, p=point: last_logged_step(metrics, s) >= p,
            120,
            interval=0.005,
            what=f"step {point}",
        )
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda p=pid: gone(p), 10, what="the killed process to end")
        checkpoint = latest_checkpoint(run_dir / "checkpoints")
        lost.append(
            last_logged_step(metrics) - (int(checkpoint.name.removeprefix("step-")) if checkpoint else 0)
        )

    done = wait_for(
        lambda: (j := client.fine_tuning.jobs.retrieve(job_id)).status in ("succeeded", "failed") and j,
        timeout=300, what="the job to finish",
    )  # fmt: skip
    assert done.status == "succeeded", done.error
    events = events_of(client, job_id)
    killed = [e for e in events if "ended unexpectedly (signal 9)" in e.message]
    steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert len(killed) == KILLS and set(steps) == set(range(1, STEPS + 1))
    assert max(lost) <= EVERY, lost
    assert straight.wait(300) == 0, straight.stderr.read().decode()
    served = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    reference = load_file(tmp_path / "straight" / "straight" / "adapter" / "adapter_model.safetensors")
    assert served.keys() == reference.keys()
    worst = max((served[k] - reference[k]).abs().max().item() for k in served)
    for name in served:
        torch.testing.assert_close(served[name], reference[name], rtol=1e-5, atol=1e-6)
    print(
        f"\nRELIABILITY kill-9: {KILLS} kills at steps {points} of {STEPS} (checkpoint every {EVERY}); "
        f"job succeeded; steps lost per kill {lost} (max {max(lost)}); "
        f"largest adapter difference from an uninterrupted run {worst:.2e}"
    )
