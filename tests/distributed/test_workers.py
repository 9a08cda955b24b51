"""Celery workers on a real Redis, started with docs/deploy.md's commands: jobs go to the workers that
have their queue and GPUs, a worker runs at most its slots, and a worker killed mid-job hands the job
to another worker of its queue, which resumes it from the checkpoint."""

from __future__ import annotations

import signal
import subprocess
import uuid
from pathlib import Path

import openai
import pytest

from tests.distributed.guide import guide_command
from tests.service.conftest import Service, events_of, tiny_job_options, wait_for


@pytest.fixture
def fleet(tmp_path, postgres_url, redis_queue):
    """The server, and a way to start the guide's workers on queues of this test's own."""
    broker, queue = redis_queue
    prefix = f"{queue}-{uuid.uuid4().hex[:6]}"
    env = {
        "TUNERY_DATABASE_URL": postgres_url,
        "TUNERY_BROKER_URL": broker,
        "TUNERY_QUEUE": f"{prefix}-default",
    }
    service = Service(tmp_path / "home", env)
    service.home.mkdir()
    service.queues = {"cpu": f"{prefix}-cpu", "gpu": f"{prefix}-gpu"}
    yield service.start()
    service.stop()


def start_worker(service: Service, name: str) -> tuple[subprocess.Popen, str]:
    """The guide's `tunery worker --name NAME@%h …`, on this test's queues; returns (process, its name)."""
    cpu, gpu = service.queues["cpu"], service.queues["gpu"]
    unique = f"{name}-{uuid.uuid4().hex[:6]}"
    replace = {"cpu": cpu, "gpu": gpu, "gpu,cpu": f"{gpu},{cpu}", f"{name}@%h": f"{unique}@%h"}
    command = guide_command("tunery worker", f"--name {name}@%h", replace=replace)
    with open(service.home / f"worker-{unique}.log", "ab") as log:
        worker = subprocess.Popen(
            [*command, "--log-level", "WARNING"], env=service.env, stdout=log, stderr=subprocess.STDOUT
        )
    service.workers.append(worker)
    return worker, unique


def submit(client: openai.OpenAI, file_id: str, model_dir: Path, resources: dict, **train) -> str:
    job = client.fine_tuning.jobs.create(
        model=str(model_dir), training_file=file_id, hyperparameters={"batch_size": 4},
        extra_body={"resources": resources, "tunery": tiny_job_options(**train)},
    )  # fmt: skip
    return job.id


def finished(client: openai.OpenAI, job_ids: list[str], timeout: float) -> dict:
    def all_done():
        jobs = {job_id: client.fine_tuning.jobs.retrieve(job_id) for job_id in job_ids}
        return (
            jobs if all(job.status in ("succeeded", "failed", "cancelled") for job in jobs.values()) else None
        )

    return wait_for(all_done, timeout=timeout, interval=1.0, what="the jobs to finish")


def started_and_ended(client: openai.OpenAI, job) -> tuple[int, int]:
    started = next(
        e.created_at for e in events_of(client, job.id) if e.message.startswith("Running on worker")
    )
    return started, job.finished_at


@pytest.mark.slow
def test_six_jobs_run_on_the_workers_that_have_their_queue_and_gpus(fleet, train_file, tiny_model_dir):
    _, cpu_box = start_worker(fleet, "cpu-box")  # --queues cpu --slots 2
    _, gpu_box = start_worker(fleet, "gpu-box")  # --queues gpu --gpus 2 --slots 2
    client = openai.OpenAI(api_key=fleet.key("team-a"), base_url=f"{fleet.url}/v1", max_retries=2)
    file_id = client.files.create(file=train_file.open("rb"), purpose="fine-tune").id
    cpu, gpu = fleet.queues["cpu"], fleet.queues["gpu"]
    requests = [
        {"queue": cpu}, {"queue": cpu}, {"queue": cpu},
        {"queue": gpu}, {"queue": gpu, "gpus": 1}, {"queue": gpu, "gpus": 2},
    ]  # fmt: skip
    job_ids = [submit(client, file_id, tiny_model_dir, resources, max_steps=4) for resources in requests]

    jobs = finished(client, job_ids, timeout=420)
    assert [jobs[j].status for j in job_ids] == ["succeeded"] * 6, [jobs[j].error for j in job_ids]
    ran_on = [jobs[j].worker.split("@")[0] for j in job_ids]  # type: ignore[attr-defined]
    assert ran_on == [cpu_box] * 3 + [gpu_box] * 3
    gpus_given = [
        next(e.data["gpus"] for e in events_of(client, j) if e.message.startswith("Running on worker"))
        for j in job_ids
    ]
    assert [len(g) for g in gpus_given] == [0, 0, 0, 0, 1, 2]
    two_gpu_run = fleet.home / "service" / "artifacts" / "jobs" / job_ids[5] / "train.log"
    assert "rank 0 of 2" in two_gpu_run.read_text()  # one training process per GPU
    # cpu-box has 2 slots: its third job started only once one of the first two had ended.
    spans = sorted(started_and_ended(client, jobs[j]) for j in job_ids[:3])
    assert spans[2][0] >= min(end for _, end in spans[:2])


@pytest.mark.slow
def test_a_killed_worker_hands_its_job_to_the_other_worker_of_the_queue(fleet, train_file, tiny_model_dir):
    doomed, cpu_box = start_worker(fleet, "cpu-box")  # --queues cpu
    client = openai.OpenAI(api_key=fleet.key("team-a"), base_url=f"{fleet.url}/v1", max_retries=2)
    file_id = client.files.create(file=train_file.open("rb"), purpose="fine-tune").id
    job_id = submit(
        client, file_id, tiny_model_dir, {"queue": fleet.queues["cpu"]}, max_steps=120, save_every=10
    )
    wait_for(
        lambda: client.fine_tuning.jobs.retrieve(job_id).worker, timeout=120, what="a worker to take the job"
    )
    _, spare = start_worker(fleet, "spare")  # --queues gpu,cpu: it reads the job's queue too
    checkpoint = fleet.home / "service" / "artifacts" / "jobs" / job_id / "checkpoints" / "step-000010"
    wait_for((checkpoint / "COMPLETE").exists, timeout=120, interval=0.02, what="the first checkpoint")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(30)

    job = finished(client, [job_id], timeout=240)[job_id]
    assert job.status == "succeeded", job.error
    messages = [e.message for e in events_of(client, job_id)]
    workers = [m.split()[3].split("@")[0] for m in messages if m.startswith("Running on worker")]
    assert workers[0] == cpu_box and workers[-1] == spare
    resumed = [m for m in messages if m.startswith("Resuming from checkpoint step")]
    assert resumed and int(resumed[-1].split()[4]) >= 10, messages
    steps = [e.data["step"] for e in events_of(client, job_id) if e.type == "metrics"]
    assert set(steps) == set(range(1, 121))
