"""The cross-project attack against a real server: A's job trains on the tiny model, B tries to start
from it; B still starts from its own fine-tuned model; nothing A's finished job shows names a folder.
"""

from __future__ import annotations

import pytest

from tests.conftest import chat_rows, write_jsonl
from tests.security.server_paths import assert_no_server_path, server_roots
from tests.service.conftest import Service, tiny_job_options, wait_for

pytestmark = pytest.mark.slow


def finished(client, headers: dict, job_id: str) -> dict:
    def done():
        job = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=headers).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(done, timeout=240, interval=0.5, what=f"job {job_id}")
    assert job["status"] == "succeeded", job
    return job


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import httpx2

    home = tmp_path_factory.mktemp("tenancy")
    running = Service(home, {}).start()
    client = httpx2.Client(base_url=running.url, timeout=60)
    yield running, client, home
    client.close()
    running.stop()


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "orders.jsonl", chat_rows(24))


def train(client, headers: dict, model: str, file_id: str) -> dict:
    body = {"model": model, "training_file": file_id, "hyperparameters": {"batch_size": 4},
            "tunery": tiny_job_options(max_steps=2)}  # fmt: skip
    answer = client.post("/v1/fine_tuning/jobs", headers=headers, json=body)
    assert answer.status_code == 200, answer.text
    return finished(client, headers, answer.json()["id"])


def test_b_cannot_train_on_as_adapter_but_on_its_own(server, train_file, tiny_model_dir):
    running, client, home = server
    a, b = ({"Authorization": f"Bearer {running.key(p)}"} for p in ("a", "b"))

    def upload(headers):
        with train_file.open("rb") as handle:
            files = {"file": ("orders.jsonl", handle)}
            return client.post(
                "/v1/files", headers=headers, data={"purpose": "fine-tune"}, files=files
            ).json()

    a_file, b_file = upload(a)["id"], upload(b)["id"]
    a_job = train(client, a, str(tiny_model_dir), a_file)
    a_dir = home / "service" / "artifacts" / "jobs" / a_job["id"]
    assert (a_dir / "adapter").is_dir()
    for model in [str(a_dir), str(a_dir / "adapter"), a_job["fine_tuned_model"], f"{a_dir}/../{a_dir.name}"]:
        answer = client.post(
            "/v1/fine_tuning/jobs", headers=b, json={"model": model, "training_file": b_file}
        )
        assert answer.status_code == 404 and answer.json()["error"]["param"] == "model", answer.text
    assert client.get("/v1/fine_tuning/jobs", headers=b).json()["data"] == []

    b_first = train(client, b, str(tiny_model_dir), b_file)
    b_second = train(client, b, b_first["fine_tuned_model"], b_file)  # B's own model as the base
    assert b_second["model"] == b_first["fine_tuned_model"]
    run = client.get(f"/api/runs/{b_second['id']}", headers=b).json()
    assert run["record"]["parent"]["name"] == b_first["id"]

    roots = server_roots(None, home)
    pages = [
        f"/v1/fine_tuning/jobs/{a_job['id']}", "/v1/fine_tuning/jobs", f"/v1/fine_tuning/jobs/{a_job['id']}/events",
        f"/v1/fine_tuning/jobs/{a_job['id']}/checkpoints", "/v1/models", "/api/registry",
        f"/api/registry/{a_job['fine_tuned_model']}", f"/api/runs/{a_job['id']}",
        f"/api/runs/{a_job['id']}/evaluation", "/v1/files", "/api/datasets",
    ]  # fmt: skip
    for page in pages:
        answer = client.get(page, headers=a, params={"limit": 100} if "events" in page else None)
        assert answer.status_code == 200, (page, answer.text)
        assert_no_server_path(answer.json(), roots, allowed=[str(tiny_model_dir)])
    for page in [f"/api/runs/{b_second['id']}", f"/v1/fine_tuning/jobs/{b_second['id']}", "/api/registry"]:
        assert_no_server_path(client.get(page, headers=b).json(), roots, allowed=[str(tiny_model_dir)])
