"""The job suite through the official `openai` client, against both backends (SQLite + local worker;
PostgreSQL + Redis + two `tunery worker` processes): upload, train, events, checkpoints, models,
cancel, isolation, a refused upload, a failure with a reason."""

from __future__ import annotations

import httpx2
import openai
import pytest

from tests.service.conftest import events_of, gone, tiny_job_options, wait_for

pytestmark = pytest.mark.usefixtures("service")


@pytest.fixture(scope="module")
def client(service) -> openai.OpenAI:
    return openai.OpenAI(api_key=service.key("team-a"), base_url=f"{service.url}/v1", max_retries=0)


@pytest.fixture(scope="module")
def finished_job(client, train_file, tiny_model_dir):
    """One job run to the end: upload, create, poll its events until it succeeded."""
    uploaded = client.files.create(file=train_file.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir),
        training_file=uploaded.id,
        suffix="orders",
        method={"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 4, "n_epochs": 1}}},
        extra_body={"tunery": tiny_job_options(save_every=3)},
    )

    def finished():
        events = events_of(client, job.id)
        statuses = [e.data.get("status") for e in events if e.data]
        return events if {"succeeded", "failed", "cancelled"} & set(statuses) else None

    events = wait_for(finished, timeout=120, what=f"job {job.id} to finish")
    return uploaded, client.fine_tuning.jobs.retrieve(job.id), events


def test_a_job_runs_to_a_registered_model(client, finished_job, tiny_model_dir):
    uploaded, job, events = finished_job
    assert job.status == "succeeded", job.error
    assert uploaded.status == "processed" and uploaded.purpose == "fine-tune"
    statuses = [e.data["status"] for e in events if e.data and "status" in e.data]
    assert statuses == ["validating_files", "queued", "running", "succeeded"]
    losses = [e for e in events if e.type == "metrics"]
    assert [e.data["step"] for e in losses] == [1, 2, 3, 4, 5, 6]  # 24 rows / batch 4
    assert all(e.data["train_loss"] > 0 for e in losses)
    assert job.fine_tuned_model == f"ft:{tiny_model_dir.name}:orders:{job.id}"
    assert job.trained_tokens and job.trained_tokens > 0
    assert job.hyperparameters.batch_size == 4 and job.hyperparameters.n_epochs == 1

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert [c.step_number for c in checkpoints.data] == [6, 3]
    assert checkpoints.data[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-6"
    assert checkpoints.data[0].metrics.train_loss == losses[-1].data["train_loss"]

    assert job.fine_tuned_model in [m.id for m in client.models.list()]
    assert client.models.retrieve(job.fine_tuned_model).owned_by == "team-a"


def test_the_registry_keeps_the_lineage(client, finished_job, service, train_file, tiny_model_dir):
    uploaded, job, _ = finished_job
    headers = {"Authorization": f"Bearer {client.api_key}"}
    entry = httpx2.get(f"{service.url}/api/registry/{job.fine_tuned_model}", headers=headers).json()
    lineage = entry["lineage"]
    assert lineage["base_model"] == str(tiny_model_dir) and lineage["project"] == "team-a"
    assert lineage["dataset"]["content_hash"] == uploaded.content_hash  # type: ignore[attr-defined]
    assert lineage["dataset"]["name"] == "orders" and lineage["dataset"]["version"] == 1
    assert lineage["config"]["lora"]["r"] == 4 and lineage["metrics"]["steps"] == 6
    assert (
        service.home / "service" / "artifacts" / entry["artifact"] / "adapter_model.safetensors"
    ).is_file()

    run = httpx2.get(f"{service.url}/api/runs/{job.id}", headers=headers).json()
    assert [step for step, _ in run["series"]["loss"]] == [1, 2, 3, 4, 5, 6]
    versions = httpx2.get(f"{service.url}/api/datasets/orders/versions/1", headers=headers).json()
    assert versions["report"]["ok"] and versions["rows"] == 24
    methods = httpx2.get(f"{service.url}/api/methods", headers=headers).json()
    assert "lora" in [m["name"] for m in methods]


def test_jobs_list_in_pages(client, finished_job):
    _, job, _ = finished_job
    first = client.fine_tuning.jobs.list(limit=1)
    assert first.data and first.data[0].object == "fine_tuning.job"
    ids = [j.id for j in client.fine_tuning.jobs.list(limit=1)]  # iterating follows `after` page by page
    assert job.id in ids and len(ids) == len(set(ids))


def test_cancel_stops_the_training_process_within_10_seconds(client, service, train_file, tiny_model_dir):
    uploaded = client.files.create(file=train_file.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir), training_file=uploaded.id,
        extra_body={"tunery": tiny_job_options(max_steps=100_000, save_every=50)},
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {client.api_key}"}

    def training():
        run = httpx2.get(f"{service.url}/api/runs/{job.id}", headers=headers).json()
        return run["pid"] if run["series"].get("loss") else None

    pid = wait_for(training, timeout=90, what="the first training step")
    client.fine_tuning.jobs.cancel(job.id)
    cancelled = wait_for(
        lambda: client.fine_tuning.jobs.retrieve(job.id).status == "cancelled", timeout=10, what="cancelled"
    )
    assert cancelled
    wait_for(lambda: gone(pid), timeout=5, what=f"training process {pid} to end")
    assert any("cancelled" in e.message for e in events_of(client, job.id))


def test_another_project_sees_nothing_and_no_key_gets_401(client, finished_job, service):
    uploaded, job, _ = finished_job
    other = openai.OpenAI(api_key=service.key("team-b"), base_url=f"{service.url}/v1", max_retries=0)
    for fetch in (
        lambda: other.files.retrieve(uploaded.id),
        lambda: other.fine_tuning.jobs.retrieve(job.id),
        lambda: other.fine_tuning.jobs.list_events(job.id),
        lambda: other.fine_tuning.jobs.cancel(job.id),
        lambda: other.models.retrieve(job.fine_tuned_model),
        lambda: other.models.delete(job.fine_tuned_model),
    ):
        with pytest.raises(openai.NotFoundError):
            fetch()
    assert job.fine_tuned_model not in [m.id for m in other.models.list()]
    assert not other.fine_tuning.jobs.list().data
    for path in ("/v1/files", f"/v1/fine_tuning/jobs/{job.id}", "/v1/models", "/api/datasets"):
        answer = httpx2.get(f"{service.url}{path}")
        assert answer.status_code == 401, path
        assert answer.json()["error"]["code"] == "missing_api_key"
    assert (
        httpx2.get(f"{service.url}/v1/models", headers={"Authorization": "Bearer tk-wrong"}).status_code
        == 401
    )
    assert httpx2.get(f"{service.url}/health").status_code == 200


def test_a_malformed_upload_is_refused_with_its_report_and_nothing_is_stored(client, service, tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
        '{"messages": [{"role": "user", "content": "no answer"}]}\n'
        '{"messages": "not a list"}\n',
        encoding="utf-8",
    )
    files_before = [f.id for f in client.files.list()]
    stored_before = sorted((service.home / "service" / "artifacts" / "files").glob("*"))
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=bad.open("rb"), purpose="fine-tune")
    error = refused.value.body
    assert error["code"] == "invalid_file"
    assert [e["line"] for e in error["report"]["errors"]] == [2, 3]
    assert error["report"]["valid_rows"] == 1
    assert [f.id for f in client.files.list()] == files_before
    assert sorted((service.home / "service" / "artifacts" / "files").glob("*")) == stored_before
    assert not list((service.home / "service" / "artifacts" / "tmp").glob("*"))
    headers = {"Authorization": f"Bearer {client.api_key}"}
    assert httpx2.get(f"{service.url}/api/datasets/broken/versions", headers=headers).status_code == 404


def test_a_missing_model_fails_the_job_with_a_reason(client, train_file, tmp_path):
    uploaded = client.files.create(file=train_file.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=str(tmp_path / "no-such-model"),
        training_file=uploaded.id,
        extra_body={"tunery": tiny_job_options()},
    )
    failed = wait_for(
        lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status == "failed" and j,
        timeout=90,
        what="failure",
    )
    assert failed.error.code == "model_not_found"
    assert "does not exist" in failed.error.message and "Traceback" not in failed.error.message


def test_a_bad_config_key_is_refused_when_the_job_is_created(client, train_file, tiny_model_dir):
    uploaded = client.files.create(file=train_file.open("rb"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="did you mean 'lora.alpha'"):
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir),
            training_file=uploaded.id,
            extra_body={"tunery": {"lora": {"alpah": 8}}},
        )


def test_the_openapi_schema_lists_every_endpoint(service):
    paths = httpx2.get(f"{service.url}/openapi.json").json()["paths"]
    for path in (
        "/v1/files", "/v1/files/{file_id}", "/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs/{job_id}",
        "/v1/fine_tuning/jobs/{job_id}/cancel", "/v1/fine_tuning/jobs/{job_id}/events",
        "/v1/fine_tuning/jobs/{job_id}/checkpoints", "/v1/models", "/v1/models/{model_id}", "/api/datasets",
        "/api/runs/{job_id}", "/api/registry", "/api/methods", "/health",
    ):  # fmt: skip
        assert path in paths, path
