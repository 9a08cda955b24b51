"""The server killed (kill -9) while a file is being uploaded: after a restart no partial file is registered."""

from __future__ import annotations

import json
import socket
import time

import httpx2
import pytest

from tests.conftest import chat_rows
from tests.service.conftest import Service

BOUNDARY = "tunery-boundary"


def multipart(name: str, content: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def send_upload(service: Service, key: str, body: bytes, send: int) -> socket.socket:
    """Send the request with all of its headers and the first `send` bytes of its body."""
    connection = socket.create_connection(("127.0.0.1", service.port))
    head = (
        f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    connection.sendall(head.encode() + body[:send])
    return connection


@pytest.fixture
def service(tmp_path):
    running = Service(tmp_path / "home", {})
    running.home.mkdir()
    yield running.start()
    running.stop()


@pytest.mark.slow
@pytest.mark.parametrize("when", ["mid-transfer", "while-checking"])
def test_a_server_killed_during_an_upload_registers_no_partial_file(service, when):
    key = service.key("team-a")
    rows = chat_rows(20000)  # ~2 MB: the checker takes a moment over it
    content = "".join(json.dumps(row) + "\n" for row in rows).encode()
    body = multipart("orders.jsonl", content)
    connection = send_upload(service, key, body, len(body) // 2 if when == "mid-transfer" else len(body))
    time.sleep(0.5)
    service.server.kill()
    service.server.wait(10)
    connection.close()
    service.start()
    headers = {"Authorization": f"Bearer {key}"}
    files = httpx2.get(f"{service.url}/v1/files", headers=headers).json()["data"]
    stored = list((service.home / "service" / "artifacts" / "files").glob("*"))
    for file in files:  # a file that made it is whole; nothing else is listed
        assert file["bytes"] == len(content)
        served = httpx2.get(f"{service.url}/v1/files/{file['id']}/content", headers=headers)
        assert served.content == content
    assert len(stored) <= len(files) + (1 if when == "while-checking" else 0)
    if when == "mid-transfer":
        assert files == [] and stored == []
    datasets = httpx2.get(f"{service.url}/api/datasets", headers=headers).json()["data"]
    assert len(datasets) == len(files)
    print(f"\nRELIABILITY upload kill ({when}): {len(files)} files registered, {len(stored)} stored")
