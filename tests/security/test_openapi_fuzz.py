"""schemathesis against the server's own OpenAPI schema, authenticated, over ASGI: no request,
however malformed, may get a 500. The fast suite sends a few cases per operation, `slow` many."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.security.conftest import chat_lines, in_process_service, upload

FAST, SLOW = 4, 60


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The server with one project that has a file and a job, so some ids exist."""
    with in_process_service(tmp_path_factory.mktemp("schemathesis")) as (client, key_of):
        headers = key_of("team-a")
        file_id = upload(client, headers, "orders.jsonl", chat_lines(4)).json()["id"]
        client.post("/v1/fine_tuning/jobs", headers=headers, json={"model": "m", "training_file": file_id})
        yield client, headers


def openapi_schema() -> dict:
    """The schema the app publishes (building it needs no database; it is not started here)."""
    from tunery.app import create_app
    from tunery.settings import Settings

    return create_app(Settings(data_dir="/nonexistent")).openapi()


# Loaded at import, not from a fixture: schemathesis' lazy loader trips over pytest 9's node ids.
schema = schemathesis.openapi.from_dict(openapi_schema())
ANY_HEALTH = list(HealthCheck)


def call(case, api) -> None:
    client, headers = api
    request = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    for cookie, value in (request.pop("cookies", None) or {}).items():
        client.cookies.set(cookie, value)
    response = client.request(**request)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )


@schema.parametrize()
@settings(max_examples=FAST, deadline=None, suppress_health_check=ANY_HEALTH)
def test_no_request_gets_a_server_error(case, api):
    call(case, api)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=SLOW, deadline=None, suppress_health_check=ANY_HEALTH)
def test_no_request_gets_a_server_error_long_run(case, api):
    call(case, api)
