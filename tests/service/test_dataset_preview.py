"""`GET /api/datasets/{name}/preview`: a dataset version's rows as training sees them, token by token,
over the same domain function the dashboard calls; bad requests are 400/404 in OpenAI's shape."""

from __future__ import annotations

import json

import pytest

from tests.conftest import CHATML, build_tiny_llama, build_tiny_tokenizer, chat_rows
from tests.security.conftest import in_process_service, upload


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.fixture
def service(tmp_path):
    with in_process_service(tmp_path / "service") as running:
        yield running


@pytest.fixture
def orders(service):
    client, key_of = service
    assert upload(client, key_of("team-a"), "orders.jsonl", jsonl(chat_rows(10))).status_code == 200
    return client, key_of("team-a")


def test_the_preview_gives_each_token_its_text_id_and_trained_flag(orders, tiny_model_dir):
    client, headers = orders
    answer = client.get(
        "/api/datasets/orders/preview", params={"model": str(tiny_model_dir), "rows": 3}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert (shown["name"], shown["version"], shown["model"]) == ("orders", 1, str(tiny_model_dir))
    assert (shown["batching"], shown["max_length"], shown["train_rows"]) == ("packed", 1024, 9)
    assert len(shown["rows"]) == 3 and shown["template_issues"] == []
    row = shown["rows"][0]
    assert set(row["tokens"][0]) == {"id", "text", "trained"}
    trained = "".join(token["text"] for token in row["tokens"] if token["trained"])
    assert trained.startswith('{"item": ') and trained.endswith("}<|im_end|>\n")
    assert "".join(token["text"] for token in row["tokens"]).startswith("<|im_start|>user\n")
    assert row["trained_tokens"] == sum(token["trained"] for token in row["tokens"])


def test_a_version_and_max_length_can_be_chosen(orders, tiny_model_dir):
    client, headers = orders
    upload(client, headers, "orders.jsonl", jsonl(chat_rows(20)))  # version 2
    params = {"model": str(tiny_model_dir), "rows": 1}
    assert client.get("/api/datasets/orders/preview", params=params, headers=headers).json()["version"] == 2
    first = client.get(
        "/api/datasets/orders/preview", params={**params, "version": 1, "max_length": 18}, headers=headers
    ).json()
    assert (first["version"], first["train_rows"], first["max_length"]) == (1, 9, 18)
    assert first["rows"][0]["truncated"] and len(first["rows"][0]["tokens"]) == 18


def test_bad_requests_are_refused_with_a_code_and_the_parameter(orders, tiny_model_dir):
    client, headers = orders
    ask = lambda **params: client.get("/api/datasets/orders/preview", params=params, headers=headers)  # noqa: E731
    unknown = ask(model="/no/such/model").json()["error"]
    assert (unknown["code"], unknown["param"]) == ("model_not_found", "model")
    assert "/no/such/model" in unknown["message"]
    assert ask(model="https://example.com/m").json()["error"]["code"] == "model_not_allowed"
    for rows in (0, 51):
        refused = ask(model=str(tiny_model_dir), rows=rows)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "query.rows"
    nothing_left = ask(model=str(tiny_model_dir), max_length=8)
    assert nothing_left.status_code == 400
    message = nothing_left.json()["error"]["message"]
    assert message.startswith("orders@1: no example is left") and "artifacts" not in message  # no server path
    missing = client.get("/api/datasets/nope/preview", params={"model": str(tiny_model_dir)}, headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "dataset_not_found"
    assert ask(model=str(tiny_model_dir), version=7).status_code == 404
    assert client.get("/api/datasets/orders/preview").status_code == 401


def test_template_issues_come_with_the_rows(orders, tmp_path):
    client, headers = orders
    folder = tmp_path / "cut-model"
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = CHATML.replace("'<|im_start|>assistant\n'", "'<|im_start|>assist'")
    build_tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shown = client.get("/api/datasets/orders/preview", params={"model": str(folder)}, headers=headers).json()
    issues = shown["template_issues"]
    assert len(issues) == 10 and {issue["line"] for issue in issues} == set(range(1, 11))
    assert (issues[0]["kind"], issues[0]["expected"], issues[0]["found"]) == ("prompt", "t", "tant")
    assert issues[0]["message"].startswith("line 1, message 2 (assistant)")
