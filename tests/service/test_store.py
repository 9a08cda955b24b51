"""The pieces under the jobs, without a server: migrations, the job lease, failure reasons, light imports."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import inspect

from tunery.jobs.lifecycle import model_id
from tunery.jobs.runner import acquire_lease, failure_reason, release_lease
from tunery.store import connect, session_factory
from tunery.store.tables import Job


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'tunery.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = connect(url)
    yield session_factory(engine)
    if request.param == "postgresql":
        with engine.begin() as connection:
            for table in (
                "job_checkpoints",
                "job_events",
                "models",
                "jobs",
                "dataset_versions",
                "files",
                "api_keys",
            ):
                connection.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()


def add_job(sessions, status: str = "queued") -> str:
    with sessions.begin() as session:
        job = Job(
            project="p", model="m", training_file="file-x", seed=1, hyperparameters={}, method={}, config={},
            status=status, run_dir="jobs/x",
        )  # fmt: skip
        session.add(job)
        session.flush()
        return job.id


def test_migrations_create_every_table(sessions):
    tables = set(inspect(sessions.kw["bind"]).get_table_names())
    assert {
        "alembic_version",
        "api_keys",
        "files",
        "dataset_versions",
        "jobs",
        "job_events",
        "job_checkpoints",
    } <= tables


def test_a_job_lease_is_held_by_one_runner_until_it_expires_or_is_released(sessions):
    job_id = add_job(sessions)
    assert acquire_lease(sessions, job_id, "a", seconds=0.5)
    assert not acquire_lease(sessions, job_id, "b", seconds=0.5)  # a second delivery of the same job
    time.sleep(0.6)
    assert acquire_lease(sessions, job_id, "b", seconds=30)  # a's runner died: its lease ran out
    release_lease(sessions, job_id, "a")  # not a's to release any more
    assert not acquire_lease(sessions, job_id, "c", seconds=30)
    release_lease(sessions, job_id, "b")
    assert acquire_lease(sessions, job_id, "c", seconds=30)


def test_a_finished_job_is_not_run_again(sessions):
    assert not acquire_lease(sessions, add_job(sessions, status="succeeded"), "a", seconds=30)


@pytest.mark.parametrize(
    ("problem", "code", "says"),
    [
        ({"code": "out_of_memory", "message": "CUDA out of memory"}, "out_of_memory", "lower train.batch_size"),
        ({"code": "training_diverged", "message": "loss became nan at step 2; lower train.lr"}, "training_diverged", "lower train.lr"),
        ({"code": "model_not_found", "message": "model path x does not exist"}, "model_not_found", "does not exist"),
        ({"code": "invalid_training_file", "message": "no rows left"}, "invalid_training_file", "no rows"),
        ({"code": "internal_error", "message": "KeyError: 'x'"}, "internal_error", "job log"),
    ],
)  # fmt: skip
def test_failures_get_a_code_and_a_reason_a_person_can_act_on(problem, code, says):
    got_code, message = failure_reason(problem)
    assert got_code == code and says in message


def test_a_fine_tuned_model_is_named_after_base_suffix_and_job():
    job = Job(id="ftjob-1", project="team", model="/models/tiny-llama/", suffix="orders")
    assert model_id(job) == "ft:tiny-llama:orders:ftjob-1"
    assert (
        model_id(Job(id="ftjob-2", project="team", model="smollm2-135m-instruct"))
        == "ft:smollm2-135m-instruct:team:ftjob-2"
    )


def test_the_server_and_worker_modules_do_not_import_torch():
    code = (
        "import sys, tunery.cli, tunery.app, tunery.jobs.runner, tunery.jobs.local, tunery.jobs.celery_app;"
        "tunery.app.create_app(); print('torch' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )
