"""Issue "Safe to share", finding 5: bodies and numbers the edges did not bound.

Uploads are refused by who sends them before their body is read, and by their size while it
streams; a prompt by its bytes before it is tokenised; every numeric config key by the server's
ceiling; path and header integers by their range (404/400, never a 500)."""

from __future__ import annotations

import pytest

from tests.security.conftest import chat_lines, in_process_service, upload

BOUNDARY = "tunery-limits"
HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
    "Content-Type: application/jsonl\r\n\r\n"
).encode()
CHUNK = 64 * 1024


def pulled_by(client, path: str, headers: dict[str, str], total: int) -> tuple[int, int]:
    """(status, bytes the server pulled) of a chunked multipart body of `total` bytes, sent straight to
    the app over ASGI, so every chunk the server reads is counted (TestClient reads a body whole)."""
    pulled, status = 0, []

    async def receive():
        nonlocal pulled
        if pulled >= total:
            return {"type": "http.request", "body": b"", "more_body": False}
        chunk = HEAD if pulled == 0 else b"x" * CHUNK
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    raw = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", "host": "127.0.0.1"} | {
        k.lower(): v for k, v in headers.items()
    }
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in raw.items()], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip

    async def call():
        await client.app(scope, receive, send)

    client.portal.call(call)
    return status[0], pulled


@pytest.mark.parametrize("path", ["/v1/files", "/ui/files"])
def test_an_upload_without_a_key_or_session_is_refused_before_its_body_is_read(tmp_path, path):
    with in_process_service(tmp_path) as (client, key_of):
        status, pulled = pulled_by(client, path, {}, total=16 * 1024 * 1024)
        assert status == 401
        assert pulled <= 2 * CHUNK  # the head, perhaps one chunk: not the 16 MB the client would send
        wrong = {"Authorization": "Bearer tk-wrong", "Cookie": "tunery_session=wrong"}
        status, pulled = pulled_by(client, path, wrong, total=16 * 1024 * 1024)
        assert status == 401 and pulled <= 2 * CHUNK
    assert not (tmp_path / "artifacts" / "tmp").exists()


def signed_in_headers(client, key_of) -> dict[str, str]:
    """The session cookie and CSRF token of a dashboard sign-in with the project's key."""
    from tests.web.conftest import sign_in, token_in

    key = key_of("a")["Authorization"].removeprefix("Bearer ")
    assert sign_in(client, key).status_code == 303
    token = token_in(client.get("/jobs").text)
    return {"Cookie": f"tunery_session={client.cookies['tunery_session']}", "X-CSRF-Token": token}


def test_a_dashboard_upload_over_the_limit_is_refused_as_it_streams(tmp_path):
    with in_process_service(tmp_path, max_upload_bytes=1000) as (client, key_of):
        headers = signed_in_headers(client, key_of)
        status, pulled = pulled_by(client, "/ui/files", headers, total=16 * 1024 * 1024)
        assert status == 413
        assert pulled <= 1000 + 64 * 1024 + 2 * CHUNK
        declared = client.post(
            "/ui/files", headers=headers, files={"file": ("big.jsonl", chat_lines(2000))}
        )  # Content-Length: ~150 KB
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "file_too_large"


def test_a_dashboard_upload_with_a_wrong_csrf_header_is_refused_before_its_body_is_read(tmp_path):
    with in_process_service(tmp_path) as (client, key_of):
        headers = signed_in_headers(client, key_of) | {"X-CSRF-Token": "forged"}
        status, pulled = pulled_by(client, "/ui/files", headers, total=16 * 1024 * 1024)
        assert status == 403 and pulled <= 2 * CHUNK


def test_uploads_still_work_through_the_api_and_the_dashboard(tmp_path):
    with in_process_service(tmp_path) as (client, key_of):
        answer = upload(client, key_of("a"), "orders.jsonl", chat_lines(4))
        assert answer.status_code == 200, answer.text
        headers = signed_in_headers(client, key_of)
        shown = client.post("/ui/files", headers=headers, files={"file": ("more.jsonl", chat_lines(4))})
        assert shown.status_code == 200 and "more" in shown.text
        missing = client.post("/v1/files", headers=key_of("a"), files={"file": ("o.jsonl", chat_lines(2))})
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "purpose"
        no_file = client.post("/v1/files", headers=key_of("a"), data={"purpose": "fine-tune"})
        assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"


def test_a_json_body_over_the_request_limit_is_refused(tmp_path):
    with in_process_service(tmp_path, max_request_bytes=4096) as (client, key_of):
        big = {"model": "m", "training_file": "file-x", "suffix": "x" * 10_000}
        answer = client.post("/v1/fine_tuning/jobs", headers=key_of("a"), json=big)
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"

        def chunked():
            yield b'{"model": "m", "training_file": "file-x", "suffix": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        headers = key_of("a") | {"Content-Type": "application/json"}
        answer = client.post("/v1/fine_tuning/jobs", headers=headers, content=chunked())
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"
        odd = key_of("a") | {"Content-Length": "9" * 5000}
        assert client.get("/v1/files", headers=odd).status_code < 500


HUGE = "9223372036854775808"  # 2**63: past int64, and so past every integer column


def test_dashboard_path_and_header_integers_out_of_range_are_a_404_or_400(tmp_path):
    from tests.web.test_dashboard import _job_with_events

    with in_process_service(tmp_path) as (client, key_of):
        assert upload(client, key_of("a"), "orders.jsonl", chat_lines(4)).status_code == 200
        headers = signed_in_headers(client, key_of)
        client.headers.update(headers)
        for number in (HUGE, "1" * 30, "-1", "0"):
            page = client.get(f"/datasets/orders/versions/{number}")
            assert page.status_code == 404, (number, page.status_code)
            for tail in ("preview", "lengths"):
                answer = client.get(f"/ui/datasets/orders/versions/{number}/{tail}")
                assert answer.status_code in (400, 404), (number, tail, answer.status_code)
        job_id = _job_with_events(client, "a")
        for sent in ("abc", "1" * 20, HUGE, "-5", "1e3"):
            answer = client.get(f"/ui/jobs/{job_id}/stream", headers={"Last-Event-ID": sent})
            assert answer.status_code == 400, (sent, answer.status_code)
            assert answer.json()["error"]["param"] == "Last-Event-ID"
        with client.stream("GET", f"/ui/jobs/{job_id}/stream", headers={"Last-Event-ID": "2"}) as resumed:
            assert resumed.status_code == 200 and "".join(resumed.iter_text()).count("event: job") == 2


OVER = "x" * 1001  # one byte over max_prompt_bytes=1000 below
PROMPTS = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": OVER}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "system", "content": "x" * 600},
                                           {"role": "user", "content": [{"type": "text", "text": "é" * 300}]}]},
     "messages"),
    ("/v1/completions", {"prompt": OVER}, "prompt"),
    ("/v1/completions", {"prompt": ["x" * 600, "x" * 600]}, "prompt"),
]  # fmt: skip


@pytest.fixture(scope="module")
def inference_service(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("prompt-limit")
    settings = {"inference_base_models": [str(tiny_model_dir)], "max_prompt_bytes": 1000}
    with in_process_service(folder, **settings) as (client, key_of):
        yield client, key_of("a"), str(tiny_model_dir)


@pytest.mark.parametrize(("path", "body", "param"), PROMPTS, ids=["chat", "chat-parts", "text", "texts"])
def test_a_prompt_over_the_byte_limit_is_refused_before_it_is_tokenised(
    inference_service, monkeypatch, path, body, param
):
    from tunery.serve.engine import Engine

    client, headers, model = inference_service
    encoded = []
    for name in ("encode_chat", "encode_text"):
        original = getattr(Engine, name)
        monkeypatch.setattr(
            Engine, name, lambda self, *a, _o=original, **k: encoded.append(1) or _o(self, *a, **k)
        )
    answer = client.post(path, headers=headers, json={"model": model, "max_tokens": 2, **body})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "prompt_too_large"
    assert answer.json()["error"]["param"] == param
    assert encoded == []
    fits = client.post(path, headers=headers, json={"model": model, "max_tokens": 2, "prompt": "hi",
                                                    "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert fits.status_code == 200, fits.text


def test_a_token_list_prompt_is_a_400_not_a_500(inference_service):
    client, headers, model = inference_service
    for prompt in ([1, 2, 3], [[1, 2], [3]], [10**30]):
        answer = client.post("/v1/completions", headers=headers, json={"model": model, "prompt": prompt})
        assert answer.status_code == 400, answer.text


UNBOUNDED = [
    ({"lora": {"rank_pattern": {"q_proj": 10**9}}}, "tunery.lora.rank_pattern.q_proj"),
    ({"lora": {"alpha_pattern": {"v_proj": 1e300}}}, "tunery.lora.alpha_pattern.v_proj"),
    ({"method": "adalora", "adalora": {"init_r": 2**70}}, "tunery.adalora.init_r"),
    ({"method": "prompt", "prompt": {"virtual_tokens": 10**9}}, "tunery.prompt.virtual_tokens"),
    ({"train": {"grad_accum": 2**70}}, "tunery.train.grad_accum"),
    ({"train": {"keep_checkpoints": 10**12}}, "tunery.train.keep_checkpoints"),
    ({"freeze": {"top_layers": 10**9}}, "tunery.freeze.top_layers"),
]


@pytest.mark.parametrize(("tunery", "param"), UNBOUNDED, ids=[p for _, p in UNBOUNDED])
def test_a_number_over_the_servers_ceiling_is_a_400_naming_its_param(tmp_path, tunery, param):
    with in_process_service(tmp_path) as (client, key_of):
        file_id = upload(client, key_of("a"), "orders.jsonl", chat_lines(4)).json()["id"]
        body = {"model": "smollm2-135m-instruct", "training_file": file_id, "tunery": tunery}
        answer = client.post("/v1/fine_tuning/jobs", headers=key_of("a"), json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] | {"message": ""} == {
            "message": "", "type": "invalid_request_error", "param": param, "code": "over_server_limit",
        }  # fmt: skip
        assert client.get("/v1/fine_tuning/jobs", headers=key_of("a")).json()["data"] == []


ODD_NUMBERS = ["abc", "-1", "9" * 30, "9" * 5000, "1e9", " 12 ", "", "0x10"]


def test_odd_header_numbers_and_cookies_never_get_a_server_error(tmp_path):
    with in_process_service(tmp_path) as (client, key_of):
        session = signed_in_headers(client, key_of)
        client.cookies.clear()
        for odd in ODD_NUMBERS:
            for method, path, headers in (
                ("GET", "/v1/files", key_of("a")),
                ("GET", "/jobs", session),
                ("POST", "/ui/jobs", session),
                ("POST", "/v1/files", key_of("a")),
            ):
                answer = client.request(method, path, headers=headers | {"Content-Length": odd}, content=b"")
                assert answer.status_code < 500, (method, path, odd[:20], answer.status_code)
            cookie = {"Cookie": f"tunery_session={odd}", "X-CSRF-Token": odd}
            assert client.get("/ui/jobs/statuses", headers=cookie).status_code == 401
