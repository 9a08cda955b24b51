"""The dashboard in-process (FastAPI's TestClient over `create_app`) with SQLite and a project key."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import chat_rows, write_jsonl

CHROMIUM = Path(os.environ.get("TUNERY_TEST_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, through Playwright (no browser download); skipped, saying why, without it."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: Debian's chromium package could not be installed (`make browser`)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


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


def token_in(html: str) -> str:
    """The CSRF token a page hands its forms (the hidden `csrf_token` field)."""
    found = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert found, "the page has no csrf_token field"
    return found.group(1)


def sign_in(client: TestClient, key: str, next_path: str = "/jobs", **headers: str):
    """Sign in as the page does: fetch the form (its nonce cookie and token), then post it."""
    token = token_in(client.get("/signin").text)
    data = {"api_key": key, "next": next_path, "csrf_token": token}
    return client.post("/signin", data=data, headers=headers, follow_redirects=False)


@pytest.fixture
def signed_in(app_client, key) -> TestClient:
    """The client after signing in on the page, as a person does: it holds the session cookie and
    sends the session's CSRF token with every request, as the pages' scripts do."""
    answer = sign_in(app_client, key)
    assert answer.status_code == 303, answer.text
    app_client.headers["X-CSRF-Token"] = token_in(app_client.get("/jobs").text)
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
