"""Issue 21, findings 5 and 7 (jobs, files, datasets, keys): each case was accepted (200) or answered
unhelpfully before, and is now a 400 naming its `param` (or the behaviour OpenAI has)."""

from __future__ import annotations

import pytest

from tests.security.conftest import chat_lines, upload

NEVER_RUNS = [
    ({"hyperparameters": {"n_epochs": 1e9}}, "hyperparameters.n_epochs"),
    ({"hyperparameters": {"n_epochs": 1e308}}, "hyperparameters.n_epochs"),
    ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
    ({"hyperparameters": {"batch_size": 2**70}}, "hyperparameters.batch_size"),
    ({"hyperparameters": {"learning_rate_multiplier": 1e308}}, "hyperparameters.learning_rate_multiplier"),
    ({"hyperparameters": {"learning_rate_multiplier": -1}}, "hyperparameters.learning_rate_multiplier"),
    ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 10**6}}}},
     "method.supervised.hyperparameters.batch_size"),
    ({"tunery": {"train": {"max_steps": 10**12}}}, "tunery.train.max_steps"),
    ({"tunery": {"lora": {"r": 10**9}}}, "tunery.lora.r"),
    ({"tunery": {"data": {"max_length": 10**12}}}, "tunery.data.max_length"),
    ({"tunery": {"train": {"threads": 10**6}}}, "tunery.train.threads"),
    ({"tunery": {"train": {"epochs": 10**9}}}, "tunery.train.epochs"),
    ({"tunery": {"model": {"device": "cuda:9"}}}, "tunery.model.device"),
    ({"tunery": {"model": {"device": "tpu"}}}, "tunery.model.device"),
    ({"model": ""}, "model"),
    ({"model": "   "}, "model"),
    ({"model": "smol\x00lm"}, "model"),
    ({"suffix": "a:b"}, "suffix"),
    ({"suffix": "<b>x</b>"}, "suffix"),
    ({"suffix": "line\nbreak"}, "suffix"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"hyperparameters": {"warmup": 5}}, "hyperparameters.warmup"),
]  # fmt: skip


@pytest.fixture
def job_request(service):
    client, key_of = service
    headers = key_of("team-a")
    file_id = upload(client, headers, "orders.jsonl", chat_lines(4)).json()["id"]
    return client, headers, {"model": "smollm2-135m-instruct", "training_file": file_id}


@pytest.mark.parametrize(("change", "param"), NEVER_RUNS, ids=[p for _, p in NEVER_RUNS])
def test_a_job_that_could_never_run_is_a_400_naming_its_param(job_request, change, param):
    client, headers, body = job_request
    answer = client.post("/v1/fine_tuning/jobs", headers=headers, json={**body, **change})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
    listed = client.get("/v1/fine_tuning/jobs", headers=headers).json()["data"]
    assert listed == []


def test_an_unknown_hyperparameter_names_the_nearest_valid_key(job_request):
    client, headers, body = job_request
    for typo, nearest in (
        ("warmup", "tunery.train.warmup_ratio"),
        ("n_epoch", "n_epochs"),
        ("batchsize", "batch_size"),
    ):
        answer = client.post(
            "/v1/fine_tuning/jobs", headers=headers, json={**body, "hyperparameters": {typo: 1}}
        )
        message = answer.json()["error"]["message"]
        assert answer.status_code == 400 and typo in message and f"did you mean {nearest}" in message


def test_the_servers_ceilings_come_from_its_settings(tmp_path):
    from tests.security.conftest import in_process_service

    with in_process_service(tmp_path, max_job_steps=50, max_job_lora_rank=4) as (client, key_of):
        headers = key_of("team-a")
        file_id = upload(client, headers, "orders.jsonl", chat_lines(4)).json()["id"]
        body = {"model": "smollm2-135m-instruct", "training_file": file_id}
        for tunery, param in (
            ({"train": {"max_steps": 51}}, "tunery.train.max_steps"),
            ({"lora": {"r": 8}}, "tunery.lora.r"),
        ):
            answer = client.post("/v1/fine_tuning/jobs", headers=headers, json={**body, "tunery": tunery})
            assert answer.json()["error"]["param"] == param and "at most" in answer.json()["error"]["message"]
        many = {
            **body,
            "hyperparameters": {"n_epochs": 1000},
            "tunery": {"lora": {"r": 4}},
        }  # 4 rows x 1000 epochs > 50 steps
        assert (
            client.post("/v1/fine_tuning/jobs", headers=headers, json=many).json()["error"]["param"]
            == "hyperparameters.n_epochs"
        )
        fine = {**body, "tunery": {"train": {"max_steps": 50}, "lora": {"r": 4}}}
        assert client.post("/v1/fine_tuning/jobs", headers=headers, json=fine).status_code == 200


def test_cancel_answers_cancelled_and_a_finished_job_is_refused_alike(job_request):
    from tunery.store.tables import Job

    client, headers, body = job_request
    queued = client.post("/v1/fine_tuning/jobs", headers=headers, json=body).json()["id"]
    running = client.post("/v1/fine_tuning/jobs", headers=headers, json=body).json()["id"]
    done = client.post("/v1/fine_tuning/jobs", headers=headers, json=body).json()["id"]
    with client.app.state.sessions.begin() as session:
        row = (
            session.scalar(Job.__table__.select().where(Job.id == running))
            and session.query(Job).filter_by(id=running).one()
        )
        row.status, row.lease_owner, row.lease_expires = "running", "worker-1", 9e12  # held by a live runner
        session.query(Job).filter_by(id=done).one().status = "succeeded"
    for job_id in (queued, running):
        answer = client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel", headers=headers)
        assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
        assert client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=headers).json()["status"] == "cancelled"
    for job_id in (queued, done):
        again = client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel", headers=headers)
        assert again.status_code == 400 and again.json()["error"]["code"] == "job_finished"


def test_a_failed_jobs_error_shows_no_server_path(job_request, caplog):
    from tunery.jobs.lifecycle import fail
    from tunery.store.tables import Job

    client, headers, body = job_request
    job_id = client.post("/v1/fine_tuning/jobs", headers=headers, json=body).json()["id"]
    secret_place = "/srv/tunery-data/artifacts/jobs/" + job_id + "/data/train.jsonl"
    with client.app.state.sessions.begin() as session:
        fail(
            session,
            session.query(Job).filter_by(id=job_id).one(),
            "invalid_file",
            f"cannot read {secret_place}: denied",
        )
    shown = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=headers).text
    events = client.get(f"/v1/fine_tuning/jobs/{job_id}/events", headers=headers).text
    assert "/srv/" not in shown and "/srv/" not in events and "train.jsonl" in shown
    assert secret_place in caplog.text and job_id in caplog.text  # the full detail is in the server log


def test_a_5000_character_filename_is_a_400_naming_file(service):
    client, key_of = service
    for length in (300, 5000):
        answer = upload(client, key_of("team-a"), "a" * length + ".jsonl", chat_lines(2))
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "file"
        assert "255" in answer.json()["error"]["message"]


def test_a_10000_character_dataset_name_is_refused(service):
    client, key_of = service
    headers = key_of("team-a")
    file_id = upload(client, headers, "orders.jsonl", chat_lines(2)).json()["id"]
    for name in ("d" * 10_000, "<script>", "a%00b"):
        answer = client.post(f"/api/datasets/{name}/versions", headers=headers, json={"file_id": file_id})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "name", name
    assert (
        client.post("/api/datasets/orders-2/versions", headers=headers, json={"file_id": file_id}).status_code
        == 200
    )


def test_a_nul_byte_in_a_model_name_never_reaches_the_jobs_page(service, tmp_path):
    from fastapi.testclient import TestClient

    from tests.web.conftest import sign_in

    client, key_of = service
    headers = key_of("team-a")
    file_id = upload(client, headers, "orders.jsonl", chat_lines(2)).json()["id"]
    answer = client.post(
        "/v1/fine_tuning/jobs", headers=headers, json={"model": "x\x00<b>", "training_file": file_id}
    )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "model"
    browser = TestClient(client.app, base_url="http://127.0.0.1")
    assert sign_in(browser, headers["Authorization"].removeprefix("Bearer ")).status_code == 303
    assert "\x00" not in browser.get("/jobs").text


def test_keys_list_and_revoke_in_the_cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tunery.cli import app

    monkeypatch.setenv("TUNERY_DATA_DIR", str(tmp_path / "service"))
    runner = CliRunner()
    secret = runner.invoke(app, ["keys", "create", "--project", "team-a"]).output.strip()
    listed = runner.invoke(app, ["keys", "list"])
    assert listed.exit_code == 0 and "team-a" in listed.output and secret not in listed.output
    key_id = listed.output.split()[0]
    assert "revoked" in runner.invoke(app, ["keys", "revoke", key_id]).output
    assert "revoked" in runner.invoke(app, ["keys", "list", "--project", "team-a"]).output
    missing = runner.invoke(app, ["keys", "revoke", "key-nope"])
    assert missing.exit_code == 2 and "tunery keys list" in missing.output
