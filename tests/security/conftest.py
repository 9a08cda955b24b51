"""The service in this process (SQLite in a temporary folder), for checks that need no training.

    with in_process_service(tmp_path, max_upload_rows=2) as (client, key_of):
        client.get("/v1/files", headers=key_of("team-a"))

Jobs are recorded but not run: the dispatcher is swapped for one that only notes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class NoteJobs:
    """A dispatcher that runs nothing: the job rows stay queued."""

    def __init__(self):
        self.submitted: list[str] = []

    def start(self) -> None: ...

    def submit(self, job_id: str) -> None:
        self.submitted.append(job_id)

    def stop(self) -> None: ...


@contextmanager
def in_process_service(folder: Path, **settings) -> Iterator[tuple]:
    from fastapi.testclient import TestClient

    from tunery.app import create_app
    from tunery.service.keys import create_key
    from tunery.settings import Settings

    app = create_app(Settings(data_dir=folder, **settings))
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.dispatcher.stop()
        app.state.dispatcher = NoteJobs()
        keys: dict[str, str] = {}

        def key_of(project: str) -> dict[str, str]:
            if project not in keys:
                with app.state.sessions.begin() as session:
                    keys[project] = create_key(session, project)
            return {"Authorization": f"Bearer {keys[project]}"}

        yield client, key_of


@pytest.fixture
def service(tmp_path) -> Iterator[tuple[object, Callable[[str], dict]]]:
    with in_process_service(tmp_path / "service") as running:
        yield running


def upload(client, headers: dict, name: str, content: bytes):
    return client.post(
        "/v1/files", headers=headers, data={"purpose": "fine-tune"}, files={"file": (name, content)}
    )


def chat_lines(n: int) -> bytes:
    import json

    from tests.conftest import chat_rows

    return "".join(json.dumps(row) + "\n" for row in chat_rows(n)).encode()
