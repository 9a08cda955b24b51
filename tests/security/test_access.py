"""Who gets in: every endpoint but health needs a key, keys are stored hashed and checked in constant
time, and one project never sees another's files, datasets, jobs, runs or models."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from tests.security.conftest import chat_lines, upload

OPEN = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}  # no data behind them


def api_routes(app) -> list[tuple[str, str]]:
    """(method, path with every {parameter} filled in) for each endpoint of the OpenAPI schema."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        if path not in OPEN:
            found.extend((method.upper(), re.sub(r"\{[^}]+\}", "x", path)) for method in operations)
    return found


def test_every_endpoint_but_health_refuses_a_missing_or_wrong_key(service):
    client, _ = service
    routes = api_routes(client.app)
    assert len(routes) >= 20  # files, jobs, models, datasets, runs, registry, inference
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer tk-not-a-key"}, {"Authorization": "Basic abc"}):
            answer = client.request(method, path, headers=headers)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.json()["error"]["type"] == "authentication_error"
    assert client.get("/health").status_code == 200


def test_keys_are_stored_as_sha256_digests_never_as_the_secret(service):
    from tunery.store.tables import ApiKey

    client, key_of = service
    secret = key_of("team-a")["Authorization"].removeprefix("Bearer ")
    with client.app.state.sessions() as session:
        stored = session.scalars(select(ApiKey)).all()
    assert len(stored) == 1
    assert stored[0].key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {value for value in vars(stored[0]).values() if isinstance(value, str)}


def test_the_key_check_ends_in_a_constant_time_comparison(service, monkeypatch):
    import hmac

    import tunery.service.keys as keys

    client, key_of = service
    headers = key_of("team-a")
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(keys.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    assert client.get("/v1/files", headers=headers).status_code == 200
    assert compared and all(a == b for a, b in compared)


def test_a_revoked_key_is_refused(service):
    from sqlalchemy import update

    from tunery.store.tables import ApiKey

    client, key_of = service
    headers = key_of("team-a")
    with client.app.state.sessions.begin() as session:
        session.execute(update(ApiKey).values(revoked=True))
    assert client.get("/v1/files", headers=headers).status_code == 401


def test_one_project_never_sees_another_projects_things(service):
    client, key_of = service
    a, b = key_of("team-a"), key_of("team-b")
    file_id = upload(client, a, "orders.jsonl", chat_lines(6)).json()["id"]
    job = client.post(
        "/v1/fine_tuning/jobs", headers=a, json={"model": "smollm2-135m-instruct", "training_file": file_id}
    )
    assert job.status_code == 200, job.text
    job_id = job.json()["id"]
    theirs = [
        ("GET", f"/v1/files/{file_id}"), ("GET", f"/v1/files/{file_id}/content"), ("DELETE", f"/v1/files/{file_id}"),
        ("GET", f"/api/files/{file_id}/report"), ("GET", f"/v1/fine_tuning/jobs/{job_id}"),
        ("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel"), ("GET", f"/v1/fine_tuning/jobs/{job_id}/events"),
        ("GET", f"/v1/fine_tuning/jobs/{job_id}/checkpoints"), ("GET", f"/api/runs/{job_id}"),
        ("GET", f"/api/runs/{job_id}/evaluation"), ("GET", "/api/datasets/orders/versions"),
        ("GET", "/api/datasets/orders/versions/1"),
    ]  # fmt: skip
    for method, path in theirs:
        answer = client.request(method, path, headers=b)
        assert answer.status_code == 404, (method, path, answer.text)
        assert client.request("GET", path, headers=a).status_code == 200 or method != "GET", path
    borrowed = client.post("/v1/fine_tuning/jobs", headers=b, json={"model": "m", "training_file": file_id})
    assert borrowed.status_code == 404
    registered = client.post("/api/datasets/stolen/versions", headers=b, json={"file_id": file_id})
    assert registered.status_code == 404
    for listing in ("/v1/files", "/v1/fine_tuning/jobs", "/api/datasets", "/api/registry"):
        assert client.get(listing, headers=b).json()["data"] == [], listing
        assert client.get(listing, headers=a).status_code == 200


@pytest.mark.parametrize("path", ["/v1/models", "/api/registry"])
def test_model_listings_show_only_the_callers_project(service, path):
    """No project's fine-tuned models; /v1/models also lists the server's base models, which every key may use."""
    from tunery.settings import Settings

    client, key_of = service
    listed = {model["id"] for model in client.get(path, headers=key_of("team-b")).json()["data"]}
    assert listed == (set(Settings().inference_base_models) if path == "/v1/models" else set())
