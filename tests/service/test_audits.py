"""`POST /api/runs/{job}/audit`: a background audit of a finished job whose result reads back as JSON."""

from __future__ import annotations

import shutil
import time

import pytest
from fastapi.testclient import TestClient

import tunery
from tests.conftest import chat_rows, write_jsonl
from tests.training.test_train import config_for
from tests.web.conftest import make_key

JOB = "ftjob-audit1"


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit-api")
    rows = chat_rows(12)
    rows[4]["messages"][0]["content"] = "<script>alert('row')</script>"
    rows.append(rows[4])  # line 13 repeats line 5: flagged (memorised) whatever the model learned
    files = write_jsonl(folder / "train.jsonl", rows), write_jsonl(folder / "valid.jsonl", chat_rows(4))
    return tunery.train(config_for(tiny_model_dir, files, folder / "runs", max_steps=2), quiet=True)


@pytest.fixture
def client(tmp_path, finished_run):
    from tunery.app import create_app
    from tunery.settings import Settings
    from tunery.store.tables import Job

    settings = Settings(data_dir=tmp_path / "service", poll_seconds=0.2)
    shutil.copytree(finished_run.path, settings.artifacts / "jobs" / JOB)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        with client.app.state.sessions.begin() as session:
            for job_id, status in ((JOB, "succeeded"), ("ftjob-running1", "running")):
                session.add(Job(
                    id=job_id, project="team-a", model="tiny", training_file="file-x", seed=1, hyperparameters={},
                    method={"type": "supervised"}, config={"method": "lora"}, status=status, run_dir=f"jobs/{job_id}",
                ))  # fmt: skip
        client.headers["Authorization"] = f"Bearer {make_key(client, 'team-a')}"
        client.app.state.test_settings = settings
        yield client


def wait_until_done(client, audit_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/runs/{JOB}/audits/{audit_id}").json()
        if status["status"] in ("succeeded", "failed"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"audit {audit_id} still {status['status']} after {timeout}s")


def test_an_audit_runs_in_the_background_and_its_rows_read_back_worst_first(client):
    started = client.post(f"/api/runs/{JOB}/audit", json={})
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "queued" and started.json()["object"] == "run.audit"
    done = wait_until_done(client, started.json()["id"])
    assert done["status"] == "succeeded", done
    summary = done["summary"]
    assert summary["rows"] == 17 and summary["run"] == JOB
    assert [d["path"] for d in summary["data"]] == ["train.jsonl", "valid.jsonl"]  # no server paths
    rows = client.get(f"/api/runs/{JOB}/audits/{done['id']}/rows", params={"limit": 5}).json()
    assert len(rows["data"]) == 5 and rows["has_more"] is True
    assert {row["source"] for row in rows["data"]} <= {"train.jsonl", "valid.jsonl"}
    everything = client.get(f"/api/runs/{JOB}/audits/{done['id']}/rows", params={"limit": 1000}).json()[
        "data"
    ]
    assert [row["flags"] != [] for row in everything] == sorted(
        (row["flags"] != [] for row in everything), reverse=True
    )
    flagged = client.get(f"/api/runs/{JOB}/audits/{done['id']}/rows", params={"flagged": "true"}).json()[
        "data"
    ]
    assert len(flagged) == summary["flagged"] and all(row["flags"] for row in flagged)
    assert [a["id"] for a in client.get(f"/api/runs/{JOB}/audits").json()] == [done["id"]]


def test_a_job_that_has_not_succeeded_is_a_409_and_a_missing_run_a_404(client):
    answer = client.post("/api/runs/ftjob-running1/audit")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "job_not_finished"
    shutil.rmtree(client.app.state.test_settings.artifacts / "jobs" / JOB)
    answer = client.post(f"/api/runs/{JOB}/audit")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "artifact_missing"


def test_a_run_without_its_adapter_fails_saying_why_and_its_rows_are_a_409(client):
    shutil.rmtree(client.app.state.test_settings.artifacts / "jobs" / JOB / "adapter")
    done = wait_until_done(client, client.post(f"/api/runs/{JOB}/audit").json()["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "invalid_audit"
    assert "has no trained adapter" in done["error"]["message"]
    assert str(client.app.state.test_settings.artifacts) not in done["error"]["message"]
    answer = client.get(f"/api/runs/{JOB}/audits/{done['id']}/rows")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "audit_not_ready"


@pytest.mark.parametrize(
    "body", [{"batch_tokens": 0}, {"batch_tokens": "many"}, {"data": "/etc/passwd"}, [1]]
)
def test_hostile_bodies_are_refused_never_a_500(client, body):
    answer = client.post(f"/api/runs/{JOB}/audit", json=body)
    assert 400 <= answer.status_code < 500, answer.text


def test_another_projects_job_and_audits_are_404(client):
    started = client.post(f"/api/runs/{JOB}/audit").json()
    wait_until_done(client, started["id"])
    client.headers["Authorization"] = f"Bearer {make_key(client, 'team-b')}"
    assert client.post(f"/api/runs/{JOB}/audit").status_code == 404
    assert client.get(f"/api/runs/{JOB}/audits/{started['id']}").status_code == 404
    assert client.get(f"/api/runs/{JOB}/audits").status_code == 404
    client.headers["Authorization"] = f"Bearer {make_key(client, 'team-a')}"
    for audit_id in ("audit-..%2F..%2Fetc", "audit-nothere", "status.json"):
        assert client.get(f"/api/runs/{JOB}/audits/{audit_id}").status_code == 404
