"""PostgreSQL and Redis restarted while a job trains on Celery workers: the job finishes, its state stays whole.

The test starts instances of its own on free ports (a PostgreSQL cluster made with initdb in a
temporary folder, run as the `postgres` user when we are root; a redis-server with an append-only
file), so restarting them disturbs nobody else's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.reliability.test_kill_9 import last_logged_step
from tests.service.conftest import Service, events_of, free_port, start_tiny_job, straight_run, wait_for

STEPS, EVERY = 240, 10  # long enough that both restarts land mid-run on a fast or a busy machine


def postgres_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name) or name


class Postgres:
    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.data = folder / "data"
        folder.mkdir(parents=True, exist_ok=True)
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(folder, "postgres")
        self._run(postgres_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self.as_user, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr + done.stdout

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        log = str(self.folder / "postgres.log")
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


class Redis:
    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), 20, what="redis to start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: redis flushes its append-only file and exits
            self.process.wait(20)


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.RedisError:
        return False


@pytest.fixture
def backing(tmp_path):
    # Not under tmp_path: pytest makes that private to root, and PostgreSQL runs as `postgres`.
    cluster = Path(tempfile.mkdtemp(prefix="tunery-pg-"))
    postgres, redis = Postgres(cluster), Redis(tmp_path / "redis")
    postgres.start()
    redis.start()
    yield postgres, redis
    redis.stop()
    with contextlib.suppress(AssertionError):  # already stopped by a failed test
        postgres.stop()
    shutil.rmtree(cluster, ignore_errors=True)


@pytest.mark.slow
def test_a_job_survives_postgres_and_redis_restarting_mid_run(backing, tmp_path, tiny_model_dir, train_file):
    postgres, redis = backing
    env = {"TUNERY_DATABASE_URL": postgres.url, "TUNERY_BROKER_URL": redis.url, "TUNERY_QUEUE": "reliability"}
    service = Service(tmp_path / "home", env, workers=1)
    service.home.mkdir()
    service.start()
    try:
        client, job_id, config = start_tiny_job(service, train_file, tiny_model_dir, STEPS, EVERY, retries=5)
        straight = straight_run(config, tmp_path / "straight")
        checkpoints = service.home / "service" / "artifacts" / "jobs" / job_id / "checkpoints"
        wait_for(lambda: list(checkpoints.glob("step-*/COMPLETE")), 180, what="the first checkpoint")
        at_restart = last_logged_step(checkpoints.parent / "metrics.jsonl")
        for backend in (redis, postgres):  # both down at once: one alone no longer slows a tiny job enough
            backend.stop()
        time.sleep(3)
        for backend in (redis, postgres):
            backend.start()
        assert at_restart < STEPS  # both went down while the job was training
        done = wait_for(
            lambda: (j := client.fine_tuning.jobs.retrieve(job_id)).status in ("succeeded", "failed") and j,
            timeout=300, what="the job to finish",
        )  # fmt: skip
        assert done.status == "succeeded", (done.error, service.log_tail())
        events = events_of(client, job_id)
        steps = [e.data["step"] for e in events if e.type == "metrics"]
        assert sorted(set(steps)) == list(range(1, STEPS + 1)), steps
        statuses = [e.data["status"] for e in events if e.data and "status" in e.data]
        assert statuses[-1] == "succeeded" and statuses.count("succeeded") == 1
        assert [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job_id, limit=100)][
            0
        ] == STEPS
        assert len(client.models.list().data) >= 1
        assert straight.wait(300) == 0
        run_dir = service.home / "service" / "artifacts" / "jobs" / job_id
        served = load_file(run_dir / "adapter" / "adapter_model.safetensors")
        reference = load_file(tmp_path / "straight" / "straight" / "adapter" / "adapter_model.safetensors")
        for name in served:
            torch.testing.assert_close(served[name], reference[name], rtol=1e-5, atol=1e-6)
        print(
            f"\nRELIABILITY backing services: Redis and PostgreSQL restarted (3 s down each) at steps "
            f"{at_restart} of a {STEPS}-step job; job {done.status}, {len(set(steps))} of {STEPS} steps recorded once or more, "
            f"adapter equal to an uninterrupted run"
        )
    finally:
        service.stop()
