"""What a caller may hand the server: uploads within limits whose names never reach the file system,
no archives, model ids that are neither URLs nor paths outside the allowed roots, no remote code
unless the server allows it, and no pickled weights."""

from __future__ import annotations

import json

import pytest

from tests.security.conftest import chat_lines, in_process_service, upload

JOB = "/v1/fine_tuning/jobs"


def stored_files(root) -> list[str]:
    return sorted(p.name for p in (root / "artifacts" / "files").glob("*")) if root.exists() else []


def test_an_upload_over_the_size_limit_is_refused_and_nothing_is_kept(tmp_path):
    with in_process_service(tmp_path, max_upload_bytes=1000) as (client, key_of):
        answer = upload(client, key_of("a"), "big.jsonl", chat_lines(40))
        assert answer.status_code == 413
        assert answer.json()["error"]["message"] == "big.jsonl is over the upload limit of 1000 bytes"
        assert client.get("/v1/files", headers=key_of("a")).json()["data"] == []
    assert stored_files(tmp_path) == [] and list((tmp_path / "artifacts" / "tmp").iterdir()) == []


def test_an_upload_declaring_more_than_the_limit_is_refused_before_it_is_read(tmp_path):
    with in_process_service(tmp_path, max_upload_bytes=1000) as (client, key_of):
        answer = upload(client, key_of("a"), "huge.jsonl", chat_lines(2000))  # ~150 KB
        assert answer.status_code == 413
        assert answer.json()["error"]["message"] == "the upload is over the limit of 1000 bytes"
    assert not (tmp_path / "artifacts" / "tmp").exists()  # the upload route never ran


def test_a_chunked_upload_without_content_length_is_refused_before_the_route_runs(tmp_path):
    boundary = "tunery-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.jsonl"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()

    def body():  # no Content-Length: the client sends it chunked
        yield head
        for _ in range(400):  # 400 x 4 KB, far over the 1000-byte limit and its 64 KB allowance
            yield chat_lines(50)[:4096]
        yield f"\r\n--{boundary}--\r\n".encode()

    with in_process_service(tmp_path, max_upload_bytes=1000) as (client, key_of):
        answer = client.post(
            "/v1/files",
            content=body(),
            headers=key_of("a") | {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["message"] == "the upload is over the limit of 1000 bytes"
        assert client.get("/v1/files", headers=key_of("a")).json()["data"] == []
    assert not (tmp_path / "artifacts" / "tmp").exists()  # counted on the way in: the route never ran


def test_an_upload_over_the_row_limit_is_refused(tmp_path):
    with in_process_service(tmp_path, max_upload_rows=5) as (client, key_of):
        assert upload(client, key_of("a"), "ok.jsonl", chat_lines(5)).status_code == 200
        answer = upload(client, key_of("a"), "many.jsonl", chat_lines(6))
        assert answer.status_code == 413
        assert answer.json()["error"] | {"message": ""} == {
            "message": "", "type": "invalid_request_error", "param": "file", "code": "too_many_rows",
        }  # fmt: skip
        assert answer.json()["error"]["message"] == "many.jsonl has 6 rows; the upload limit is 5"
    assert len(stored_files(tmp_path)) == 1


@pytest.mark.parametrize(
    "name",
    ["../../../../escaped.jsonl", "/tmp/escaped.jsonl", "..\\..\\escaped.jsonl", "sub/../../escaped.jsonl"],
)
def test_a_file_name_never_reaches_the_file_system(tmp_path, name):
    root = tmp_path / "deep" / "service"
    with in_process_service(root) as (client, key_of):
        answer = upload(client, key_of("a"), name, chat_lines(3))
        assert answer.status_code == 200, answer.text
        recorded = answer.json()["filename"]
        assert "/" not in recorded and not recorded.startswith("..")
        content = client.get(f"/v1/files/{answer.json()['id']}/content", headers=key_of("a"))
        assert content.content == chat_lines(3)
    assert [p for p in tmp_path.rglob("*escaped*")] == []
    assert stored_files(root) == [f"{answer.json()['id']}.jsonl"]


@pytest.mark.parametrize("name", ["data.zip", "data.tar.gz", "data.jsonl.gz", "data.tar", "model.pt"])
def test_archives_and_other_files_are_refused(service, name):
    client, key_of = service
    answer = upload(client, key_of("a"), name, b"PK\x03\x04 not really")
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(f"{name}: unsupported file type")


@pytest.fixture
def file_id(service):
    client, key_of = service
    return upload(client, key_of("a"), "orders.jsonl", chat_lines(4)).json()["id"]


@pytest.mark.parametrize(
    "model",
    [
        "https://example.com/model.safetensors",
        "http://10.0.0.1/m",
        "file:///etc/passwd",
        "hf://org/name",
        "s3://b/k",
    ],
)
def test_a_model_id_that_looks_like_a_url_is_refused(service, file_id, model):
    client, key_of = service
    answer = client.post(JOB, headers=key_of("a"), json={"model": model, "training_file": file_id})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "model_not_allowed"
    assert "looks like a URL; tunery never fetches models from URLs" in answer.json()["error"]["message"]


def test_the_cli_refuses_a_url_as_a_model_too():
    from tunery.models import ModelNotFoundError, resolve_model

    with pytest.raises(ModelNotFoundError, match="looks like a URL"):
        resolve_model("https://huggingface.co/org/model")


def test_model_paths_outside_the_allowed_roots_are_refused(tmp_path, tiny_model_dir):
    allowed = tmp_path / "models"
    (allowed / "tiny").parent.mkdir()
    (allowed / "tiny").symlink_to(tiny_model_dir)  # a link inside pointing outside counts as outside
    (allowed / "real").mkdir()
    (allowed / "real" / "config.json").write_text("{}")
    with in_process_service(tmp_path / "service", model_roots=[allowed]) as (client, key_of):
        headers = key_of("a")
        file_id = upload(client, headers, "orders.jsonl", chat_lines(4)).json()["id"]

        def create(model: str):
            return client.post(JOB, headers=headers, json={"model": model, "training_file": file_id})

        for outside in [
            str(tiny_model_dir),
            str(allowed / "tiny"),
            f"{allowed}/real/../../service",
            "/etc",
            "~",
        ]:
            answer = create(outside)  # answered as a missing model: nothing tells what is there
            assert answer.status_code == 404, outside
            assert answer.json()["error"] | {"message": ""} == {
                "message": "",
                "type": "not_found_error",
                "param": "model",
                "code": "model_not_found",
            }
        assert create(str(allowed / "real")).status_code == 200
        assert create("smollm2-135m-instruct").status_code == 200  # bundled aliases and hub ids are fine
        assert create("HuggingFaceTB/SmolLM2-135M-Instruct").status_code == 200


def test_remote_code_is_off_by_default_and_the_api_cannot_turn_it_on_unless_the_server_allows(tmp_path):
    from tunery.config import load_config

    assert load_config({"data": {"train": "x.jsonl"}}).model.trust_remote_code is False
    body = {"model": "org/model", "tunery": {"model": {"trust_remote_code": True}}}
    for allowed in (False, True):
        with in_process_service(tmp_path / str(allowed), allow_trust_remote_code=allowed) as (client, key_of):
            file_id = upload(client, key_of("a"), "orders.jsonl", chat_lines(4)).json()["id"]
            answer = client.post(JOB, headers=key_of("a"), json={**body, "training_file": file_id})
            if allowed:
                assert answer.status_code == 200, answer.text
                assert answer.json()["tunery"]["model"]["trust_remote_code"] is True
            else:
                assert answer.status_code == 400
                assert answer.json()["error"]["code"] == "trust_remote_code_not_allowed"


def test_the_job_model_cannot_be_swapped_through_the_extension(service, file_id):
    client, key_of = service
    body = {"model": "org/model", "training_file": file_id, "tunery": {"model": {"name": "/etc"}}}
    answer = client.post(JOB, headers=key_of("a"), json=body)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "tunery.model"


def test_pickled_weights_are_refused_for_models_and_adapters(tmp_path, tiny_model_dir):
    import shutil

    from tunery.models import ModelNotFoundError, require_safetensors, resolve_model

    model = tmp_path / "pickled-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (model / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelNotFoundError, match=r"only pickled weights \(pytorch_model.bin\)"):
        resolve_model(str(model))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelNotFoundError, match="loads safetensors only"):
        require_safetensors(adapter, "adapter")
    safe = tmp_path / "safe-model"
    shutil.copytree(tiny_model_dir, safe)
    (safe / "pytorch_model.bin").write_bytes(b"pickle")  # beside safetensors: transformers takes those
    assert resolve_model(str(safe)) == str(safe)


def test_a_run_whose_adapter_is_pickled_is_not_loaded(tmp_path, tiny_model_dir):
    from tunery.inference import load_run_model
    from tunery.models import ModelNotFoundError

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "config.yaml").write_text(f"model: {tiny_model_dir}\ndata:\n  train: x.jsonl\n")
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "adapter" / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelNotFoundError, match="holds only pickled weights"):
        load_run_model(run)
