"""The official `openai` client against `tunery serve --inference-only` on loopback: a tiny base
model and two tiny LoRA runs on it, served from one copy of the base weights."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai
import pytest

from tests.service.conftest import free_port

PROMPTS = ["item 3 quantity 2", "hello world", "item 1 quantity 4 and a longer question"]


@pytest.fixture(scope="module")
def server(tiny_model_dir, two_runs, tunery_home, tmp_path_factory):
    alpha, beta = two_runs
    port = free_port()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    command = [
        sys.executable, "-m", "tunery", "serve", "--inference-only", "--port", str(port), "--log-level", "warning",
        "--model", str(tiny_model_dir), "--adapter", f"alpha={alpha}", "--adapter", f"beta={beta}",
    ]  # fmt: skip
    env = {**__import__("os").environ, "TUNERY_HOME": str(tunery_home), "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx2.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx2.HTTPError:
            assert time.time() < deadline, log.read_text()
            time.sleep(0.2)
    yield url, str(tiny_model_dir)
    process.terminate()
    process.wait(30)


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key="unused", max_retries=0)


def ask(client, model: str, prompt: str, **options) -> str:
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=12, temperature=0, **options
    )
    return answer.choices[0].message.content


def test_chat_with_the_base_and_two_adapters_answers_and_counts_tokens(client, server):
    base = server[1]
    for model in (base, "alpha", "beta"):
        answer = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=5, temperature=0
        )
        assert answer.object == "chat.completion" and answer.model == model
        assert answer.choices[0].message.role == "assistant"
        assert answer.choices[0].finish_reason in ("stop", "length")
        assert 1 <= answer.usage.completion_tokens <= 5
        assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    # the adapters changed the model: three models, three different answers to the same prompt
    assert len({ask(client, model, PROMPTS[0]) for model in (base, "alpha", "beta")}) == 3


def test_streaming_chat_gives_the_same_text_as_a_whole_answer(client, server):
    for model in (server[1], "alpha", "beta"):
        chunks = list(
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": PROMPTS[1]}], max_tokens=12, temperature=0,
                stream=True, stream_options={"include_usage": True},
            )
        )  # fmt: skip
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == ask(client, model, PROMPTS[1])
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1


def test_concurrent_requests_for_different_adapters_equal_each_served_alone(client, server):
    """Greedy decoding: the rows of one mixed-adapter batch give the tokens they give alone."""
    jobs = [(model, prompt) for model in (server[1], "alpha", "beta") for prompt in PROMPTS]
    alone = [ask(client, model, prompt) for model, prompt in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: ask(client, *job), jobs))
    assert together == alone


def test_text_completions_seed_n_and_stop(client):
    first = client.completions.create(
        model="alpha", prompt="item 2", max_tokens=6, temperature=1.0, seed=3, n=2
    )
    again = client.completions.create(
        model="alpha", prompt="item 2", max_tokens=6, temperature=1.0, seed=3, n=2
    )
    assert first.object == "text_completion" and len(first.choices) == 2
    assert [c.text for c in first.choices] == [c.text for c in again.choices]  # a seed repeats the sample
    whole = client.completions.create(model="beta", prompt="item 2", max_tokens=8, temperature=0).choices[0]
    assert whole.text, "the tiny adapter should say something"
    stop = whole.text[len(whole.text) // 2 :][:1]
    cut = client.completions.create(
        model="beta", prompt="item 2", max_tokens=8, temperature=0, stop=[stop]
    ).choices[0]
    assert cut.text == whole.text[: whole.text.index(stop)] and cut.finish_reason == "stop"


def test_a_request_beyond_the_context_is_400_context_length_exceeded(client, server):
    base = server[1]  # the tiny model takes 256 positions
    with pytest.raises(openai.BadRequestError) as asked_too_much:
        client.chat.completions.create(
            model=base, messages=[{"role": "user", "content": "hello"}], max_tokens=300
        )
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(
            model=base, messages=[{"role": "user", "content": "hello world " * 200}]
        )
    for refused, param in ((asked_too_much, "max_tokens"), (too_long, "messages")):
        error = refused.value.body
        assert error["code"] == "context_length_exceeded" and error["param"] == param
        assert "at most 256 tokens" in error["message"]


def test_without_max_tokens_the_answer_stops_at_the_context(client, server):
    content = "hello world " * 60  # ~130 tokens: the default 512-token answer would not fit in 256
    answer = client.chat.completions.create(
        model=server[1], messages=[{"role": "user", "content": content}], temperature=0
    )
    assert answer.usage.prompt_tokens > 100
    assert answer.usage.prompt_tokens + answer.usage.completion_tokens <= 256


def test_an_unknown_model_is_404_in_openai_shape(client, server):
    with pytest.raises(openai.NotFoundError) as caught:
        ask(client, "no-such-model", "hi")
    assert caught.value.body["code"] == "model_not_found"
    reply = httpx2.post(
        f"{server[0]}/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert reply.status_code == 404 and reply.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1},
        {"messages": []},
        {"messages": [{"role": "user", "content": "hi"}], "temperature": -0.5},
        {"messages": [{"role": "wizard", "content": "hi"}]},
    ],
    ids=["negative-max-tokens", "empty-messages", "negative-temperature", "unknown-role"],
)
def test_a_bad_request_is_400_never_500(server, body):
    reply = httpx2.post(f"{server[0]}/v1/chat/completions", json={"model": "alpha", **body})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["type"] == "invalid_request_error"


HOSTILE = [
    ({"seed": 2**70}, "seed"),
    ({"seed": -(2**70)}, "seed"),
    ({"seed": 2**63 - 1, "n": 2}, "seed"),  # seed + 1 overflows int64
    ({"temperature": 1e308}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 2**70}, "max_tokens"),
    ({"n": 10**9}, "n"),
    ({"frequency_penalty": 3}, "frequency_penalty"),
    ({"presence_penalty": -1e9}, "presence_penalty"),
    ({"logit_bias": {"5": 1e9}}, "logit_bias.5"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"999999999": 1}}, "logit_bias"),  # beyond the vocabulary
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format.type"),
    ({"messages": [{"role": "user", "content": [{"foo": 1}]}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    (
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}
            ]
        },
        "messages[0].content[0].type",
    ),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0].role"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("fields,param", HOSTILE, ids=[p for _, p in HOSTILE])
def test_a_hostile_chat_field_is_a_400_naming_its_param_before_any_stream(server, fields, param, stream):
    body = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **fields}
    reply = httpx2.post(f"{server[0]}/v1/chat/completions", json={**body, "stream": stream}, timeout=60)
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("application/json")  # not an event stream
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "fields,param",
    [
        ({"echo": True}, "echo"),
        ({"best_of": 3}, "best_of"),
        ({"logprobs": 6}, "logprobs"),
        ({"seed": 2**63 - 2, "prompt": ["a", "b", "c"]}, "seed"),
        ({"prompt": ["a"] * 1000}, "prompt"),  # more rows than one request may ask for
    ],
    ids=["echo", "best-of", "logprobs-6", "seed-plus-rows", "thousand-prompts"],
)
def test_a_hostile_completion_field_is_a_400_naming_its_param(server, fields, param):
    body = {"model": "alpha", "prompt": "hi", "max_tokens": 2, **fields}
    reply = httpx2.post(f"{server[0]}/v1/completions", json=body, timeout=60)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_the_largest_seeds_answer(client):
    for seed in (2**63 - 2, -(2**63)):
        answer = client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "hi"}], max_tokens=3, seed=seed, n=2
        )
        assert len(answer.choices) == 2


def test_chat_logprobs_have_tokens_bytes_and_alternatives(client):
    answer = client.chat.completions.create(
        model="alpha", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=5, temperature=0,
        logprobs=True, top_logprobs=3,
    )  # fmt: skip
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens or answer.choices[0].finish_reason == "stop"
    assert "".join(entry.token for entry in content) == answer.choices[0].message.content
    for entry in content:
        assert entry.logprob <= 0 and entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert abs(entry.top_logprobs[0].logprob - entry.logprob) < 1e-4  # greedy: the best one
    streamed = client.chat.completions.create(
        model="alpha", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=5, temperature=0,
        logprobs=True, stream=True,
    )  # fmt: skip
    pieces = [
        e.token
        for c in streamed
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content
    ]
    assert pieces == [entry.token for entry in content]


def test_completion_logprobs_use_the_legacy_shape(client):
    choice = client.completions.create(
        model="beta", prompt="item 2", max_tokens=4, temperature=0, logprobs=2
    ).choices[0]
    legacy = choice.logprobs
    assert (
        len(legacy.tokens)
        == len(legacy.token_logprobs)
        == len(legacy.top_logprobs)
        == len(legacy.text_offset)
    )
    assert "".join(legacy.tokens) == choice.text
    assert all(len(top) <= 2 for top in legacy.top_logprobs)


def test_logit_bias_forces_and_bans_tokens(client):
    def tokens(bias: dict) -> list[str]:
        answer = client.completions.create(
            model="alpha", prompt="item 2", max_tokens=3, temperature=0, logit_bias=bias, logprobs=0
        )
        return answer.choices[0].logprobs.tokens

    favoured, banned = tokens({"65": 50, "66": 60}), tokens({"65": 50, "66": -100})
    assert len(set(favoured)) == len(set(banned)) == 1  # one token every time: the bias decides
    assert favoured != banned


def test_a_frequency_penalty_stops_a_repeated_token(client):
    # a bias makes token 65 likely; a strong frequency penalty then makes it give way after the first
    biased = {
        "model": "alpha",
        "prompt": "x",
        "max_tokens": 6,
        "temperature": 0,
        "logit_bias": {"65": 8},
        "logprobs": 0,
    }
    repeated = client.completions.create(**biased).choices[0].logprobs.tokens
    penalised = client.completions.create(**biased, frequency_penalty=2.0, presence_penalty=2.0).choices[0]
    assert len(set(repeated)) < len(set(penalised.logprobs.tokens))


def test_json_object_answers_parse_as_json(client):
    import json

    for model, temperature in (("alpha", 0), ("beta", 1.0), ("alpha", 1.5)):
        answer = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPTS[2]}], max_tokens=60, temperature=temperature,
            seed=4, response_format={"type": "json_object"},
        )  # fmt: skip
        text, finish = answer.choices[0].message.content, answer.choices[0].finish_reason
        assert text.startswith("{")
        if finish == "stop":
            assert isinstance(json.loads(text), dict)
