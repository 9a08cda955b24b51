"""`POST /api/models/{id}/export` and the model page's button: a background GGUF export with progress."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import make_key, sign_in, token_in

MODEL = "ft:tiny:team-a:ftjob-1"
URL = f"/api/models/{MODEL}/export"


@pytest.fixture
def settings(tmp_path):
    from tunery.settings import Settings

    return Settings(data_dir=tmp_path / "service", poll_seconds=0.2)


@pytest.fixture
def client(settings, finished_run):
    from tunery.app import create_app
    from tunery.store.tables import Model

    shutil.copytree(finished_run.path, settings.artifacts / "jobs" / "ftjob-1")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        with client.app.state.sessions.begin() as session:
            session.add(
                Model(id=MODEL, project="team-a", base_model="tiny", path="jobs/ftjob-1/adapter", lineage={})
            )
        client.headers["Authorization"] = f"Bearer {make_key(client, 'team-a')}"
        yield client


def wait_until_done(client, export_id: str, model: str = MODEL, timeout: float = 240) -> dict:
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        status = client.get(f"/api/models/{model}/exports/{export_id}").json()
        seen.append(status["progress"])
        if status["status"] in ("succeeded", "failed"):
            status["seen"] = seen
            return status
        time.sleep(0.3)
    raise AssertionError(f"export {export_id} still {status['status']} after {timeout}s")


def test_the_export_runs_in_the_background_and_the_file_downloads(client, tmp_path):
    from gguf import GGUFReader

    started = client.post(URL, json={"format": "gguf", "quant": "f16"})
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "queued" and started.json()["progress"] == 0.0
    done = wait_until_done(client, started.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == 1.0 and done["seen"] == sorted(done["seen"])  # progress only goes forward
    answer = client.get(f"/api/models/{MODEL}/exports/{done['id']}/file")
    assert answer.status_code == 200
    (tmp_path / "got.gguf").write_bytes(answer.content)
    reader = GGUFReader(tmp_path / "got.gguf")
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "llama"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"format": "onnx"}, "format", "unsupported_format"),
        ({"format": "gguf", "quant": "q3_k"}, "quant", "unsupported_quant"),
    ],
)
def test_bad_requests_get_a_400_naming_the_field(client, body, param, code):
    answer = client.post(URL, json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param and answer.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "body", [{"format": "gguf", "quant": "f16", "path": "/etc/passwd"}, {"quant": 3}, [1]]
)
def test_hostile_bodies_are_refused_never_a_500(client, body):
    answer = client.post(URL, json=body)
    assert 400 <= answer.status_code < 500, answer.text


def test_another_projects_model_and_exports_are_404(client, settings):
    started = client.post(URL, json={"quant": "f16"}).json()
    client.headers["Authorization"] = f"Bearer {make_key(client, 'team-b')}"
    assert client.post(URL, json={"quant": "f16"}).status_code == 404
    assert client.get(f"/api/models/{MODEL}/exports/{started['id']}").status_code == 404
    for export_id in ("export-..%2F..%2Fetc", "export-nothere", "status.json"):
        assert client.get(f"/api/models/{MODEL}/exports/{export_id}").status_code == 404


def test_a_missing_run_is_a_404_and_a_failed_export_says_why(client, settings):
    shutil.rmtree(settings.artifacts / "jobs" / "ftjob-1" / "adapter")
    started = client.post(URL, json={"quant": "f16"})
    done = wait_until_done(client, started.json()["id"])
    assert done["status"] == "failed" and "has no trained adapter yet" in done["error"]["message"]
    assert client.get(f"/api/models/{MODEL}/exports/{done['id']}/file").status_code == 409
    shutil.rmtree(settings.artifacts / "jobs" / "ftjob-1")
    answer = client.post(URL, json={"quant": "f16"})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "artifact_missing"


def test_the_file_is_refused_while_the_export_runs(client, settings):
    from tunery.service.domain.exports import export_folder

    status = {
        "id": "export-abc123",
        "model": MODEL,
        "project": "team-a",
        "status": "running",
        "progress": 0.4,
    }
    (export_folder(settings, "export-abc123")).mkdir(parents=True)
    (export_folder(settings, "export-abc123") / "status.json").write_text(json.dumps(status))
    answer = client.get(f"/api/models/{MODEL}/exports/export-abc123/file")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "export_not_ready"


def test_the_model_page_has_the_button_and_its_action_needs_the_csrf_token(client):
    key = client.headers.pop("Authorization").removeprefix("Bearer ")
    assert sign_in(client, key, "/models").status_code == 303
    page = client.get("/models").text
    assert 'class="export-gguf"' in page and '<option value="q8_0" selected>' in page
    action = f"/ui/models/export-gguf?id={MODEL}"
    assert client.post(action, json={"quant": "f16"}).status_code == 403  # no token: refused
    started = client.post(action, json={"quant": "f16"}, headers={"X-CSRF-Token": token_in(page)})
    assert started.status_code == 202, started.text
    status = client.get(f"/ui/models/exports/{started.json()['id']}?id={MODEL}")
    assert status.status_code == 200 and status.json()["model"] == MODEL
