"""OpenAI's "auto" hyperparameters map to tunery's auto rules (training/auto.py), not to constants;
a learning_rate_multiplier scales the method family's default learning rate."""

from __future__ import annotations

import io
import json

import pytest

from tests.conftest import chat_rows
from tests.security.conftest import NoteJobs


@pytest.fixture
def make_job(tmp_path):
    from tunery.service.domain import files, jobs
    from tunery.service.schemas.jobs import JobCreate
    from tunery.settings import Settings
    from tunery.store import connect, session_factory

    def make(rows: int = 6, settings: dict | None = None, **request):
        config = Settings(data_dir=tmp_path / "service", **(settings or {}))
        sessions = session_factory(connect(config.database_url))
        with sessions() as session:
            lines = "".join(json.dumps(row) + "\n" for row in chat_rows(rows)).encode()
            stored = files.store_upload(
                session, "team-a", config, io.BytesIO(lines), "orders.jsonl", "fine-tune"
            )
            body = JobCreate(model="smollm2-135m-instruct", training_file=stored.id, **request)
            return jobs.create_job(session, "team-a", body, config, NoteJobs())

    return make


def test_no_hyperparameters_and_auto_both_leave_tunerys_rules_to_choose(make_job):
    for request in ({}, {"hyperparameters": {"n_epochs": "auto", "batch_size": "auto",
                                             "learning_rate_multiplier": "auto"}}):  # fmt: skip
        job = make_job(**request)
        assert {k: job.config["train"][k] for k in ("lr", "epochs", "batch_size")} == dict.fromkeys(
            ("lr", "epochs", "batch_size"), "auto"
        )
        assert job.hyperparameters == {
            "batch_size": "auto",
            "learning_rate_multiplier": "auto",
            "n_epochs": "auto",
        }


@pytest.mark.parametrize(("method", "lr"), [("lora", 2e-3), ("dora", 2e-3), ("ia3", 2e-2), ("full", 1e-4)])
def test_a_multiplier_scales_the_method_familys_default(make_job, method, lr):
    job = make_job(hyperparameters={"learning_rate_multiplier": 2}, tunery={"method": method})
    assert job.config["train"]["lr"] == pytest.approx(lr)
    assert job.hyperparameters["learning_rate_multiplier"] == pytest.approx(2.0)


def test_numbers_are_used_as_given(make_job):
    job = make_job(hyperparameters={"n_epochs": 3, "batch_size": 4})
    assert (job.config["train"]["epochs"], job.config["train"]["batch_size"]) == (3, 4)
    assert (job.hyperparameters["n_epochs"], job.hyperparameters["batch_size"]) == (3, 4)


def test_the_step_ceiling_estimates_auto_epochs_and_batch_by_their_rules(make_job):
    from tunery.service.domain.jobs import estimated_epochs_and_batch
    from tunery.service.errors import ApiError

    auto = {"epochs": "auto", "batch_size": "auto", "grad_accum": 1}
    assert estimated_epochs_and_batch(auto, rows=6) == (10.0, 1)  # 60 examples: batch 1
    assert estimated_epochs_and_batch(auto, rows=100_000) == (1.0, 64)
    make_job(rows=6, settings={"max_job_steps": 60})  # 6 rows x 10 epochs at batch 1: 60 steps
    with pytest.raises(ApiError) as refused:
        make_job(rows=6, settings={"max_job_steps": 50})
    assert refused.value.param == "hyperparameters.n_epochs"
