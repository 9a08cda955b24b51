"""The dashboard in-process (FastAPI's TestClient over `create_app`) with SQLite and a project key."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import chat_rows, write_jsonl


@pytest.fixture
def settings(tmp_path):
    from tunery.settings import Settings

    return Settings(data_dir=tmp_path / "service", poll_seconds=0.2)


@pytest.fixture
def app_client(settings):
    from tunery.app import create_app

    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield client


def make_key(client: TestClient, project: str) -> str:
    from tunery.service.keys import create_key

    with client.app.state.sessions.begin() as session:
        return create_key(session, project)


@pytest.fixture
def key(app_client) -> str:
    return make_key(app_client, "team-a")


@pytest.fixture
def signed_in(app_client, key) -> TestClient:
    """The client after signing in on the page, as a person does: it now holds the session cookie."""
    answer = app_client.post("/signin", data={"api_key": key, "next": "/jobs"}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return app_client


@pytest.fixture
def good_file(tmp_path):
    return write_jsonl(tmp_path / "orders.jsonl", chat_rows(12))


BROKEN_ROWS = (
    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    '{"messages": [{"role": "user", "content": "no answer"}]}\n'
    '{"messages": "not a list"}\n'
)


@pytest.fixture
def broken_file(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(BROKEN_ROWS, encoding="utf-8")
    return path
