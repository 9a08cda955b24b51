"""The service on loopback, as users run it: `tunery serve` (and `tunery worker`) in their own processes.

Two backends, each used by the same job suite:
- `local`: SQLite and the local worker in the server (the embedded defaults);
- `celery`: PostgreSQL, Redis and two `tunery worker` processes.

PostgreSQL and Redis URLs come from TUNERY_TEST_DATABASE_URL and TUNERY_TEST_REDIS_URL
(defaults: the `test` database and Redis DB 11 on loopback). Each test session works in a
schema of its own and a queue of its own and removes them at the end. When a server is
unreachable the tests fail and say which, never skip.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx2
import openai
import pytest

from tests.conftest import chat_rows, write_jsonl

DATABASE_URL = os.environ.get("TUNERY_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TUNERY_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """A `tunery serve` process (and its Celery workers) with a data directory of its own."""

    def __init__(self, home: Path, env: dict[str, str], workers: int = 0):
        self.home, self.port, self.n_workers = home, free_port(), workers
        self.env = {
            **os.environ, "TUNERY_HOME": str(home), "TUNERY_DATA_DIR": str(home / "service"),
            "TUNERY_LEASE_SECONDS": "4", "TUNERY_POLL_SECONDS": "0.3", "HF_HUB_OFFLINE": "1", **env,
        }  # fmt: skip
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        with open(self.home / f"server-{self.port}.log", "ab") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "tunery", "serve", "--port", str(self.port), "--log-level", "warning"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._wait_healthy()
        while len(self.workers) < self.n_workers:
            self.start_worker()
        return self

    def start_worker(self) -> subprocess.Popen:
        name = f"w{len(self.workers)}-{uuid.uuid4().hex[:6]}@%h"
        with open(self.home / f"worker-{name.split('@')[0]}.log", "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "tunery", "worker", "--name", name, "--log-level", "WARNING"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.workers.append(worker)
        return worker

    def _wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.server.poll() is None, f"server exited: {self.log_tail()}"
            try:
                if httpx2.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server did not become healthy: {self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.home.glob("*.log")))

    def key(self, project: str) -> str:
        """An API key, made the way an operator does: `tunery keys create --project P`."""
        made = subprocess.run(
            [sys.executable, "-m", "tunery", "keys", "create", "--project", project],
            env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    def stop(self) -> None:
        for process in [*self.workers, self.server]:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.server]:
            if process is None:
                continue
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh schema on the test database for this session; dropped at the end."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(DATABASE_URL)
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"tunery_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(plain, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as err:
        pytest.fail(f"PostgreSQL at {DATABASE_URL} is unreachable ({err}); start it with `make services`")
    yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def redis_queue():
    """(broker URL, a queue name of this session's own); the queue's keys are deleted at the end."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as err:
        pytest.fail(f"Redis at {REDIS_URL} is unreachable ({err}); start it with `make services`")
    queue = f"tunery-test-{uuid.uuid4().hex[:10]}"
    yield REDIS_URL, queue
    forget_queue(client, queue)


def forget_queue(client, queue: str) -> None:
    """Remove a queue from Redis: its lists, kombu's bindings, and the unacknowledged messages
    a killed worker left (they would come back after the visibility timeout)."""
    leftovers = client.keys(f"*{queue}*")
    if leftovers:
        client.delete(*leftovers)
    for tag, value in client.hgetall("unacked").items():
        if queue.encode() in value:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    if client.type("_kombu.binding_deadlines") == b"zset":
        for member in client.zrange("_kombu.binding_deadlines", 0, -1):
            if queue.encode() in member:
                client.zrem("_kombu.binding_deadlines", member)


@pytest.fixture(scope="module", params=["local", "celery"])
def service(request, tmp_path_factory):
    """The server with either backend; the job suite runs against both."""
    home = tmp_path_factory.mktemp(f"service-{request.param}")
    if request.param == "local":
        running = Service(home, {}).start()
    else:
        broker, queue = request.getfixturevalue("redis_queue")
        env = {
            "TUNERY_DATABASE_URL": request.getfixturevalue("postgres_url"),
            "TUNERY_BROKER_URL": broker,
            "TUNERY_QUEUE": queue,
        }
        running = Service(home, env, workers=2).start()
    yield running
    running.stop()


@pytest.fixture
def local_service(tmp_path):
    """A local-worker server of one test's own, for tests that kill and restart it."""
    running = Service(tmp_path / "home", {})
    running.home.mkdir()
    yield running.start()
    running.stop()


@pytest.fixture(scope="session")
def train_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "orders.jsonl", chat_rows(24))


def tiny_job_options(**train) -> dict:
    """The `tunery` extension of a job on the tiny model: a small adapter, a few quick steps."""
    return {
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
        "data": {"max_length": 64, "validation_split": 0.0},
        "train": {"lr": 5e-3, "warmup_ratio": 0.0, "seed": 7, "threads": 1, **train},
    }


STRAIGHT_RUN = "import json, sys, tunery; tunery.train(json.loads(sys.argv[1]), quiet=True)"


def start_tiny_job(
    service: Service, train_file: Path, model_dir: Path, steps: int, every: int, retries: int = 2
) -> tuple[openai.OpenAI, str, dict]:
    """Upload the training file and start a tiny-model job of `steps` steps, a checkpoint every
    `every`; returns the client, the job id and the job's full tunery config (reading `train_file`)."""
    client = openai.OpenAI(api_key=service.key("team-a"), base_url=f"{service.url}/v1", max_retries=retries)
    uploaded = client.files.create(file=train_file.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=str(model_dir), training_file=uploaded.id, hyperparameters={"batch_size": 4},
        extra_body={"tunery": tiny_job_options(max_steps=steps, save_every=every)},
    )  # fmt: skip
    config = job.tunery  # type: ignore[attr-defined]  # it names the data by file id: the straight run reads our copy
    return client, job.id, {**config, "data": {**config["data"], "train": str(train_file)}}


def straight_run(config: dict, out: Path) -> subprocess.Popen:
    """The same config trained without interruption, in a process of its own (it sets torch threads)."""
    config = {**config, "output_dir": str(out), "run_name": "straight"}
    return subprocess.Popen([sys.executable, "-c", STRAIGHT_RUN, json.dumps(config)], stderr=subprocess.PIPE)


def wait_for(check, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def events_of(client, job_id: str) -> list:
    """All events of a job, oldest first (the API pages newest first)."""
    events, after = [], None
    while True:
        page = client.fine_tuning.jobs.list_events(job_id, limit=100, **({"after": after} if after else {}))
        events.extend(page.data)
        if not page.has_more:
            return list(reversed(events))
        after = page.data[-1].id


def gone(pid: int) -> bool:
    """The process has ended (a zombie awaiting its parent's wait counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
