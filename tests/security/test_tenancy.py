"""One project cannot reach another's models, nor any server folder, through the models a request names.

The attack: project B reads project A's job directory from a job object, then fine-tunes on top of
A's adapter by naming that directory (or A's `ft:` id, a `../` form of it, a link to it) as its
model. Every such reference is answered as a missing model (404) naming the parameter, and no job
is recorded. A's artefacts here are written as a finished job leaves them (a run folder and a
registry row), so the checks take a second; test_tenancy_training.py trains them for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.security.conftest import chat_lines, in_process_service, upload
from tests.security.server_paths import assert_no_server_path, server_roots

JOB = "/v1/fine_tuning/jobs"


def finished_job(app, project: str, job_id: str, base: str) -> str:
    """A's finished job as the runner leaves it: its run folder with an adapter, its registry row."""
    from tunery.store.tables import Model

    run_dir = app.state.settings.artifacts / "jobs" / job_id
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    (run_dir / "run.json").write_text(
        json.dumps({"status": "completed", "config": {"model": {"name": base}}})
    )
    model_id = f"ft:tiny:{project}:{job_id}"
    with app.state.sessions.begin() as session:
        session.add(
            Model(id=model_id, project=project, job_id=job_id, base_model=base,
                  path=f"jobs/{job_id}/adapter", lineage={"base_model": base, "job": job_id})
        )  # fmt: skip
    return model_id


@pytest.fixture
def two_projects(tmp_path, tiny_model_dir):
    """Project A with a finished job; project B with a training file. The model roots include the whole
    temporary folder, so the service's own storage is inside one (it stays refused)."""
    with in_process_service(tmp_path / "service", model_roots=[tmp_path, tiny_model_dir]) as (client, key_of):
        app = client.app
        a_model = finished_job(app, "a", "ftjob-aaaa", str(tiny_model_dir))
        b_file = upload(client, key_of("b"), "orders.jsonl", chat_lines(4)).json()["id"]
        yield client, key_of, app, a_model, b_file


def b_jobs(client, key_of) -> list:
    return client.get(JOB, headers=key_of("b")).json()["data"]


def refused_as_missing(answer, param: str) -> None:
    assert answer.status_code == 404, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("model_not_found", param, "not_found_error")


def attack_forms(app, a_model: str, tmp_path: Path) -> list[str]:
    artifacts = app.state.settings.artifacts
    a_dir = artifacts / "jobs" / "ftjob-aaaa"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "innocent").symlink_to(a_dir, target_is_directory=True)
    return [
        str(a_dir),  # A's job directory, as A's job object showed it
        str(a_dir / "adapter"),  # A's adapter
        f"{a_dir}/",
        a_model,  # A's fine-tuned model id
        f"{a_model}:ckpt-step-1",
        str(artifacts / "jobs" / ".." / "jobs" / "ftjob-aaaa"),
        f"{tmp_path}/models/../service/artifacts/jobs/ftjob-aaaa",
        str(tmp_path / "models" / "innocent"),  # a link under a model root into A's folder
        str(artifacts),
        str(app.state.settings.data_dir),
        "jobs/ftjob-aaaa",  # relative forms
        "../service/artifacts/jobs/ftjob-aaaa",
    ]


def test_another_projects_model_is_a_missing_model_in_every_form(two_projects, tmp_path):
    client, key_of, app, a_model, b_file = two_projects
    for model in attack_forms(app, a_model, tmp_path):
        answer = client.post(JOB, headers=key_of("b"), json={"model": model, "training_file": b_file})
        refused_as_missing(answer, "model")
        assert_no_server_path(
            answer.json(), server_roots(app.state.settings), allowed=[model]
        )  # its own words
    assert b_jobs(client, key_of) == []


def test_another_projects_model_cannot_be_the_run_a_job_starts_from(two_projects, tmp_path):
    client, key_of, app, a_model, b_file = two_projects
    param = "tunery.preference.init_from"
    for start in [
        a_model,
        str(app.state.settings.artifacts / "jobs" / "ftjob-aaaa"),
        "smollm2-135m-instruct",
    ]:
        body = {"model": "smollm2-135m-instruct", "training_file": b_file,
                "tunery": {"preference": {"init_from": start}}}  # fmt: skip
        refused_as_missing(client.post(JOB, headers=key_of("b"), json=body), param)
    assert b_jobs(client, key_of) == []


def test_another_projects_model_cannot_be_chatted_with_nor_previewed(two_projects):
    client, key_of, app, a_model, _ = two_projects
    a_dir = str(app.state.settings.artifacts / "jobs" / "ftjob-aaaa")
    for model in (a_model, a_dir):
        chat = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        refused_as_missing(client.post("/v1/chat/completions", headers=key_of("b"), json=chat), "model")


def test_the_owner_may_start_a_job_from_its_own_model_and_sees_its_id(two_projects):
    client, key_of, app, a_model, _ = two_projects
    a_file = upload(client, key_of("a"), "orders.jsonl", chat_lines(4)).json()["id"]
    answer = client.post(JOB, headers=key_of("a"), json={"model": a_model, "training_file": a_file})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["model"] == job["tunery"]["model"]["name"] == a_model
    assert_no_server_path(job, server_roots(app.state.settings))
    with app.state.sessions() as session:
        from tunery.store.tables import Job

        stored = session.get(Job, session.query(Job.seq).filter(Job.id == job["id"]).scalar())
        run_dir = app.state.settings.artifacts / "jobs" / "ftjob-aaaa"
        assert stored.config["model"]["name"] == str(run_dir)  # training loads the run folder
    checkpoint = client.post(
        JOB, headers=key_of("a"), json={"model": f"{a_model}:ckpt-step-1", "training_file": a_file}
    )
    refused_as_missing(checkpoint, "model")  # no such checkpoint saved


def test_local_paths_are_refused_unless_the_operator_sets_model_roots(tmp_path, tiny_model_dir):
    with in_process_service(tmp_path / "service", model_roots=None) as (client, key_of):
        file_id = upload(client, key_of("b"), "orders.jsonl", chat_lines(4)).json()["id"]
        for model in (str(tiny_model_dir), "/etc", "~", "./models/x"):
            answer = client.post(JOB, headers=key_of("b"), json={"model": model, "training_file": file_id})
            refused_as_missing(answer, "model")
        bundled = client.post(
            JOB, headers=key_of("b"), json={"model": "smollm2-135m-instruct", "training_file": file_id}
        )
        assert bundled.status_code == 200, bundled.text


@pytest.mark.parametrize(
    ("tunery", "param"),
    [
        ({"data": {"train": "/etc/passwd"}}, "tunery.data"),
        ({"data": {"validation": "../x.jsonl"}}, "tunery.data"),
        ({"output_dir": "/tmp/elsewhere"}, "tunery.output_dir"),
        ({"run_name": "../../x"}, "tunery.run_name"),
        ({"model": {"name": "/etc"}}, "tunery.model"),
        ({"preference": {"init_from": 3}}, "tunery.preference.init_from"),
        ({"mlflow": {"tracking_uri": "file:///tmp/anywhere"}}, "tunery.mlflow.tracking_uri"),
        ({"mlflow": {"tracking_uri": "sqlite:////tmp/x.db"}}, "tunery.mlflow.tracking_uri"),
    ],
)
def test_the_extension_takes_no_server_path(two_projects, tunery, param):
    client, key_of, _, _, b_file = two_projects
    body = {"model": "smollm2-135m-instruct", "training_file": b_file, "tunery": tunery}
    answer = client.post(JOB, headers=key_of("b"), json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
    assert b_jobs(client, key_of) == []


def test_a_new_job_object_shows_file_ids_not_server_paths(two_projects, tiny_model_dir):
    client, key_of, app, _, b_file = two_projects
    body = {"model": str(tiny_model_dir), "training_file": b_file, "validation_file": b_file}
    answer = client.post(JOB, headers=key_of("b"), json=body)
    assert answer.status_code == 200, answer.text
    shown = answer.json()["tunery"]
    assert (shown["data"]["train"], shown["data"]["validation"], shown["output_dir"]) == (
        b_file,
        b_file,
        "jobs",
    )
    for page in (answer.json(), client.get(f"{JOB}/{answer.json()['id']}", headers=key_of("b")).json(),
                 client.get(JOB, headers=key_of("b")).json(),
                 client.get(f"{JOB}/{answer.json()['id']}/events", headers=key_of("b")).json()):  # fmt: skip
        assert_no_server_path(page, server_roots(app.state.settings), allowed=[str(tiny_model_dir)])


def test_the_registry_and_model_list_show_no_server_path(two_projects, tiny_model_dir):
    client, key_of, app, a_model, _ = two_projects
    with app.state.sessions.begin() as session:
        from sqlalchemy import select

        from tunery.store.tables import Model

        model = session.scalar(select(Model).where(Model.id == a_model))
        artifacts = app.state.settings.artifacts
        model.lineage = {**model.lineage, "config": {
            "model": {"name": str(tiny_model_dir)}, "data": {"train": str(artifacts / "files" / "file-x.jsonl")},
            "output_dir": str(artifacts / "jobs"), "preference": {"init_from": str(artifacts / "jobs" / "ftjob-0")},
        }, "training_file": "file-x"}  # fmt: skip
    for path in ("/v1/models", "/api/registry", f"/v1/models/{a_model}"):
        answer = client.get(path, headers=key_of("a"))
        assert answer.status_code == 200, (path, answer.text)
        assert_no_server_path(answer.json(), server_roots(app.state.settings), allowed=[str(tiny_model_dir)])
    shown = client.get("/api/registry", headers=key_of("a")).json()["data"][0]["lineage"]["config"]
    assert shown["data"]["train"] == "file-x" and shown["preference"]["init_from"] == "jobs/ftjob-0"
