"""Kill tests: kill -9 the training process, or the worker running it, mid-run. The job must finish
after the restart, resumed from its last checkpoint, with the adapter an uninterrupted run makes."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx2
import openai
import pytest
import torch
from safetensors.torch import load_file

from tests.service.conftest import Service, events_of, gone, start_tiny_job, straight_run, wait_for

STEPS, EVERY = 120, 10


def training_pid(service: Service, client: openai.OpenAI, job_id: str) -> int:
    headers = {"Authorization": f"Bearer {client.api_key}"}
    return wait_for(
        lambda: httpx2.get(f"{service.url}/api/runs/{job_id}", headers=headers).json()["pid"], 60, what="pid"
    )


def after_first_checkpoint(service: Service, job_id: str) -> None:
    complete = (
        service.home
        / "service"
        / "artifacts"
        / "jobs"
        / job_id
        / "checkpoints"
        / f"step-{EVERY:06d}"
        / "COMPLETE"
    )
    wait_for(complete.exists, timeout=90, interval=0.02, what="the first checkpoint")


def assert_resumed_and_equal(
    service: Service, client: openai.OpenAI, job_id: str, straight: subprocess.Popen, out: Path
):
    job = wait_for(
        lambda: (j := client.fine_tuning.jobs.retrieve(job_id)).status in ("succeeded", "failed") and j,
        timeout=120, what="the job to finish",
    )  # fmt: skip
    assert job.status == "succeeded", job.error
    messages = [e.message for e in events_of(client, job_id)]
    resumed = [m for m in messages if m.startswith("Resuming from checkpoint step")]
    assert resumed and int(resumed[0].split()[4]) >= EVERY, messages
    steps = [e.data["step"] for e in events_of(client, job_id) if e.type == "metrics"]
    assert steps[-1] == STEPS and set(steps) == set(range(1, STEPS + 1))
    assert [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job_id, limit=100)][0] == STEPS
    assert straight.wait(120) == 0, straight.stderr.read().decode()
    served = load_file(
        service.home / "service" / "artifacts" / "jobs" / job_id / "adapter" / "adapter_model.safetensors"
    )
    reference = load_file(out / "straight" / "adapter" / "adapter_model.safetensors")
    assert served.keys() == reference.keys()
    for name in served:
        torch.testing.assert_close(served[name], reference[name], rtol=1e-5, atol=1e-6)


def test_kill_9_of_the_training_process_resumes_from_its_checkpoint(
    local_service, train_file, tiny_model_dir, tmp_path
):
    client, job_id, config = start_tiny_job(local_service, train_file, tiny_model_dir, STEPS, EVERY)
    straight = straight_run(config, tmp_path / "straight")
    pid = training_pid(local_service, client, job_id)
    after_first_checkpoint(local_service, job_id)
    os.kill(pid, signal.SIGKILL)
    assert_resumed_and_equal(local_service, client, job_id, straight, tmp_path / "straight")
    messages = [e.message for e in events_of(client, job_id)]
    assert any("ended unexpectedly (signal 9)" in m for m in messages)


STOPS = [
    signal.SIGKILL,
    pytest.param(signal.SIGTERM, marks=pytest.mark.slow, id="SIGTERM"),  # a graceful stop: same outcome
]


@pytest.mark.parametrize("stop", STOPS, ids=["SIGKILL", "SIGTERM"])
def test_a_job_survives_its_worker_going_down_and_resumes_after_a_restart(
    local_service, train_file, tiny_model_dir, tmp_path, stop
):
    client, job_id, config = start_tiny_job(local_service, train_file, tiny_model_dir, STEPS, EVERY)
    straight = straight_run(config, tmp_path / "straight")
    pid = training_pid(local_service, client, job_id)
    after_first_checkpoint(local_service, job_id)
    local_service.server.send_signal(stop)  # the local worker lives in the server: both go down
    local_service.server.wait(30)
    wait_for(lambda: gone(pid), timeout=10, what="the training process to end with its worker")
    local_service.start()
    assert_resumed_and_equal(local_service, client, job_id, straight, tmp_path / "straight")


@pytest.fixture
def celery_service(tmp_path, postgres_url, redis_queue):
    broker, queue = redis_queue
    env = {"TUNERY_DATABASE_URL": postgres_url, "TUNERY_BROKER_URL": broker, "TUNERY_QUEUE": f"{queue}-kill"}
    running = Service(tmp_path / "home", env, workers=2)
    running.home.mkdir()
    yield running.start()
    running.stop()


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_celery_worker_going_down_hands_the_job_to_another(
    celery_service, train_file, tiny_model_dir, tmp_path, stop
):
    client, job_id, config = start_tiny_job(celery_service, train_file, tiny_model_dir, STEPS, EVERY)
    straight = straight_run(config, tmp_path / "straight")
    pid = training_pid(celery_service, client, job_id)
    after_first_checkpoint(celery_service, job_id)
    holder = next(w for w in celery_service.workers if _parent_of(pid) == w.pid)
    holder.send_signal(stop)
    holder.wait(30)
    wait_for(lambda: gone(pid), timeout=10, what="the training process to die with its worker")
    celery_service.start_worker()  # back to two workers; either may take the job over
    assert_resumed_and_equal(celery_service, client, job_id, straight, tmp_path / "straight")


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
