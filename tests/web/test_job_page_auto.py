"""The job page shows the run's auto choices (train.lr/epochs/batch_size) and its lr range test."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

import tunery
from tests.web.conftest import make_key, sign_in

JOB = "ftjob-auto1"


@pytest.fixture(scope="module")
def auto_run(tiny_model_dir, tmp_path_factory):
    from tests.conftest import chat_rows, write_jsonl

    folder = tmp_path_factory.mktemp("auto-page")
    train, valid = (
        write_jsonl(folder / "train.jsonl", chat_rows(24)),
        write_jsonl(folder / "valid.jsonl", chat_rows(6)),
    )
    config = {
        "model": str(tiny_model_dir), "data": {"train": str(train), "validation": str(valid), "max_length": 64},
        "lora": {"r": 4}, "train": {"max_steps": 20, "batch_size": 8, "threads": 1, "seed": 7},
        "output_dir": str(folder / "runs"), "run_name": "auto",
    }  # fmt: skip
    return tunery.train(config, quiet=True)


def test_the_job_page_lists_each_auto_choice_and_the_range_test(tmp_path, auto_run):
    from tunery.app import create_app
    from tunery.settings import Settings
    from tunery.store.tables import Job

    settings = Settings(data_dir=tmp_path / "service")
    shutil.copytree(auto_run.path, settings.artifacts / "jobs" / JOB)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        with client.app.state.sessions.begin() as session:
            session.add(Job(
                id=JOB, project="team-a", model="tiny", training_file="file-x", seed=7, hyperparameters={},
                method={"type": "supervised"}, config={"method": "lora"}, status="succeeded", run_dir=f"jobs/{JOB}",
            ))  # fmt: skip
        assert sign_in(client, make_key(client, "team-a")).status_code == 303
        page = client.get(f"/jobs/{JOB}").text
    lr = auto_run.record["auto"]["resolved"]["lr"]
    assert 'id="auto-choices"' in page and "<code>train.lr</code>" in page and f"<td>{lr}</td>" in page
    assert "Learning-rate range test" in page and page.count("<tr><td>") >= len(
        auto_run.record["auto"]["curve"]["lrs"]
    )
