"""Blind A/B reviews through the REST API: create, the reviewer's blind items, votes, close, results,
export; hostile input; the automatic judge (a scripted endpoint, a position-biased one, and tunery's
own serving); answers from the real engine on two tiny models.

Most tests swap the engine for a scripted one whose answers carry a code per model (not its name),
so a test can tell which slot holds which model and vote for a model on purpose, as a person who
prefers one model's style would.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time

import pytest
from fastapi.testclient import TestClient

from tests.conftest import build_tiny_llama, chat_rows
from tests.security.conftest import upload

MODELS = ["model-alpha", "model-bravo", "model-charlie"]


def voice(model: str) -> str:
    """A model's answers start with this: the test can tell them apart, a reader learns no name."""
    return "voice-" + hashlib.sha256(model.encode()).hexdigest()[:6]


async def scripted_chat(model: str, messages: list[dict], max_tokens: int, seed: int):
    return f"{voice(model)} says: {messages[-1]['content']}", "stop"


class Api:
    """The service in this process with keys made per project; `as_(key)` sends requests with one."""

    def __init__(self, client: TestClient):
        self.client, self.keys = client, {}

    def key(self, name: str, project: str = "team-a") -> dict[str, str]:
        from tunery.service.keys import create_key

        if name not in self.keys:
            with self.client.app.state.sessions.begin() as session:
                self.keys[name] = create_key(session, project)
        return {"Authorization": f"Bearer {self.keys[name]}"}

    def call(self, method: str, path: str, who: str, **kwargs):
        return self.client.request(method, path, headers=self.key(who), **kwargs)


def make_api(tmp_path, **settings):
    from tunery.app import create_app
    from tunery.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "service", inference_base_models=MODELS, **settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def api(tmp_path, monkeypatch):
    from tunery.service.domain import reviews

    monkeypatch.setattr(reviews, "engine_chat", lambda state, project: scripted_chat)
    with make_api(tmp_path) as client:
        yield Api(client)


def create(api: Api, who: str = "owner", **body):
    body = {"models": MODELS[:2], "prompts": ["name a fruit", "name a colour", "count to three"], **body}
    return api.call("POST", "/api/reviews", who, json=body)


def open_review(api: Api, **body) -> dict:
    made = create(api, **body)
    assert made.status_code == 200, made.text
    review = api.call("GET", f"/api/reviews/{made.json()['id']}", "owner").json()
    assert review["status"] == "open", review
    return review


def slot_of(item: dict, model: str) -> str:
    (slot,) = [a["slot"] for a in item["answers"] if a["text"].startswith(voice(model))]
    return slot


def test_a_review_goes_from_answers_to_blind_votes_to_named_results(api):
    review = open_review(api)
    assert (review["model_count"], review["prompt_count"], review["models"]) == (2, 3, None)
    assert review["progress"]["answers_done"] == review["progress"]["answers_total"] == 6
    seen = []
    for who in ("owner", "reviewer"):
        listed = api.call("GET", f"/api/reviews/{review['id']}/items", who)
        seen.append(listed.text)
        items = listed.json()["data"]
        assert len(items) == 3 and all(len(item["answers"]) == 2 for item in items)
        for item in items:  # both prefer alpha, except the reviewer on the counting prompt
            counting = item["prompt"][-1]["content"] == "count to three"
            model = MODELS[1] if counting and who == "reviewer" else MODELS[0]
            vote = api.call("POST", f"/api/reviews/{review['id']}/votes", who,
                            json={"item_id": item["id"], "choice": slot_of(item, model), "note": "clearer"})  # fmt: skip
            assert vote.status_code == 200, vote.text
            seen.append(vote.text)
        seen.append(api.call("GET", f"/api/reviews/{review['id']}", who).text)
    assert not any(name in text for text in seen for name in MODELS), "a reviewer was shown a model name"

    early = api.call("GET", f"/api/reviews/{review['id']}/results", "reviewer")
    assert early.status_code == 409 and early.json()["error"]["code"] == "review_not_closed"
    assert api.call("POST", f"/api/reviews/{review['id']}/close", "owner").json()["status"] == "closed"

    results = api.call("GET", f"/api/reviews/{review['id']}/results", "reviewer").json()
    assert results["review"]["models"] == MODELS[:2]
    (pair,) = results["human"]["pairs"]
    assert (pair["model_a"], pair["a_wins"], pair["b_wins"], pair["n"]) == (MODELS[0], 5, 1, 6)
    assert pair["win_rate"] == pytest.approx(5 / 6)
    assert (round(pair["ci_low"], 4), round(pair["ci_high"], 4)) == (0.4365, 0.9699)  # Wilson, 5 of 6
    assert [r["model"] for r in results["human"]["ranking"]] == MODELS[:2]
    assert results["human"]["voters"] == 2
    agreement = results["human"]["agreement"]  # they agree on 2 of 3 items
    assert agreement["items"] == 3 and agreement["percent"] == pytest.approx(2 / 3)


def test_each_reviewer_sees_the_sides_in_an_order_of_their_own_that_stays_put(api):
    review = open_review(api, prompts=[f"prompt {i}" for i in range(40)])

    def sides(who: str) -> dict[str, str]:
        items = api.call("GET", f"/api/reviews/{review['id']}/items", who).json()["data"]
        return {item["id"]: slot_of(item, MODELS[0]) for item in items}

    mine, theirs = sides("owner"), sides("reviewer")
    assert set(mine.values()) == {"a", "b"}, "one reviewer always saw the same model on the same side"
    assert mine != theirs, "two reviewers saw every item the same way round"
    assert sides("owner") == mine  # stable across visits, so a vote means what was shown
    order = [
        item["id"]
        for item in api.call("GET", f"/api/reviews/{review['id']}/items", "reviewer").json()["data"]
    ]
    assert order != list(mine), "both reviewers got the items in the same order"


def test_a_vote_can_change_until_the_review_closes(api):
    review = open_review(api)
    item = api.call("GET", f"/api/reviews/{review['id']}/items", "reviewer").json()["data"][0]
    path = f"/api/reviews/{review['id']}/votes"
    api.call("POST", path, "reviewer", json={"item_id": item["id"], "choice": "a"})
    changed = api.call(
        "POST", path, "reviewer", json={"item_id": item["id"], "choice": "tie", "note": "same"}
    )
    assert changed.json()["choice"] == "tie"
    again = api.call("GET", f"/api/reviews/{review['id']}/items", "reviewer").json()["data"]
    assert next(i for i in again if i["id"] == item["id"])["vote"]["note"] == "same"
    assert api.call("GET", f"/api/reviews/{review['id']}", "owner").json()["progress"]["votes"] == 1
    api.call("POST", f"/api/reviews/{review['id']}/close", "owner")
    late = api.call("POST", path, "reviewer", json={"item_id": item["id"], "choice": "b"})
    assert late.status_code == 409 and late.json()["error"]["code"] == "review_not_open"


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"models": ["model-alpha"]}, "models", "two or more models"),
        ({"models": ["model-alpha", "model-alpha"]}, "models", "listed twice"),
        ({"prompts": []}, "prompts", "the prompt set is empty"),
        ({"prompts": ["  ", ""]}, "prompts", "the prompt set is empty"),
        ({"dataset": {"name": "orders", "version": 1}}, None, "not both"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"models": ["model-alpha", "no-such-model"]}, "models[1]", "does not exist"),
    ],
)
def test_a_review_that_cannot_work_is_refused_naming_the_field(api, body, param, says):
    refused = create(api, **body)
    assert refused.status_code in (400, 404), refused.text
    error = refused.json()["error"]
    assert error["param"] == param and says in error["message"]
    assert api.call("GET", "/api/reviews", "owner").json()["data"] == []


def test_a_vote_outside_the_choices_is_a_400_naming_choice(api):
    review = open_review(api)
    item = api.call("GET", f"/api/reviews/{review['id']}/items", "owner").json()["data"][0]
    refused = api.call(
        "POST", f"/api/reviews/{review['id']}/votes", "owner", json={"item_id": item["id"], "choice": "c"}
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "choice"
    too_long = {"item_id": item["id"], "choice": "a", "note": "x" * 5000}
    refused = api.call("POST", f"/api/reviews/{review['id']}/votes", "owner", json=too_long)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "note"


def test_another_projects_review_and_items_are_not_found(api):
    ours = open_review(api)
    api.key("outsider", project="team-b")
    made = api.call("POST", "/api/reviews", "outsider", json={"models": MODELS[:2], "prompts": ["hi"]})
    theirs = made.json()
    their_item = api.call("GET", f"/api/reviews/{theirs['id']}/items", "outsider").json()["data"][0]
    # their item sent to our review, and their review asked for with our key: both 404
    crossed = api.call(
        "POST", f"/api/reviews/{ours['id']}/votes", "owner", json={"item_id": their_item["id"], "choice": "a"}
    )
    assert crossed.status_code == 404 and crossed.json()["error"]["code"] == "review_item_not_found"
    for method, path in [
        ("GET", ""),
        ("GET", "/items"),
        ("POST", "/close"),
        ("GET", "/results"),
        ("GET", "/export"),
    ]:
        answer = api.call(method, f"/api/reviews/{theirs['id']}{path}", "owner")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "review_not_found", path
    vote = {"item_id": their_item["id"], "choice": "a"}
    assert api.call("POST", f"/api/reviews/{theirs['id']}/votes", "owner", json=vote).status_code == 404
    assert [r["id"] for r in api.call("GET", "/api/reviews", "owner").json()["data"]] == [ours["id"]]


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest",
        "http://127.0.0.1:8000/v1",
        "http://localhost:8000/v1",
        "http://10.0.0.1/v1",
        "http://2130706433:8000/v1",
        "http://[::ffff:127.0.0.1]:8000/v1",
        "http://evil@127.0.0.1:8000/v1",
    ],
)
def test_the_judge_may_not_call_the_servers_own_network(api, base_url):
    review = open_review(api)
    body = {"base_url": base_url, "model": "m"}
    refused = api.call("POST", f"/api/reviews/{review['id']}/judge", "owner", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "base_url"
    assert refused.json()["error"]["code"] == "url_not_allowed"
    says = "credentials" if "@" in base_url else "ask its operator to add"
    assert says in refused.json()["error"]["message"]
    assert api.call("GET", f"/api/reviews/{review['id']}", "owner").json()["judge"] is None


class Endpoint:
    """A real HTTP server on loopback that answers every POST with `reply(handler)` and notes the
    requests it got (path and Authorization header)."""

    def __init__(self, reply):
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append((self.path, self.headers.get("Authorization")))
                reply(self)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def answer_with(status: int, body: bytes = b"", location: str | None = None):
    def reply(handler):
        handler.send_response(status)
        if location:
            handler.send_header("Location", location)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return reply


@pytest.fixture
def allowing_loopback(tmp_path, monkeypatch):
    """The review API of a server whose operator allows loopback (TUNERY_URL_ALLOW_HOSTS)."""
    from tunery.service.domain import reviews

    monkeypatch.setattr(reviews, "engine_chat", lambda state, project: scripted_chat)
    with make_api(tmp_path, url_allow_hosts=["127.0.0.1"]) as client:
        yield Api(client)


def test_a_failing_judge_is_named_by_status_and_host_and_its_body_stays_in_the_log(allowing_loopback, caplog):
    api = allowing_loopback
    secret = "SECRET-from-the-endpoint redis_version:7.2"
    endpoint = Endpoint(answer_with(500, json.dumps({"error": {"message": secret}}).encode()))
    try:
        review = open_review(api)
        body = {"base_url": f"{endpoint.url}/v1", "model": "m"}
        started = api.call("POST", f"/api/reviews/{review['id']}/judge", "owner", json=body)
        assert started.status_code == 202, started.text
        judge = api.call("GET", f"/api/reviews/{review['id']}", "owner").json()["judge"]
        assert (
            judge["status"] == "failed"
            and "answered HTTP 500" in judge["error"]
            and "127.0.0.1" in judge["error"]
        )
        assert "SECRET" not in judge["error"] and "redis" not in judge["error"]
        assert secret in caplog.text  # the operator can still read it
        assert endpoint.seen and all(auth is None for _, auth in endpoint.seen)  # no key of the caller's
        with_key = {**body, "api_key": "sk-judge"}
        api.call("POST", f"/api/reviews/{review['id']}/judge", "owner", json=with_key)
        assert {auth for _, auth in endpoint.seen[-1:]} == {"Bearer sk-judge"}
        assert not any(api.keys["owner"] in str(auth) for _, auth in endpoint.seen)
    finally:
        endpoint.close()


def test_a_judge_that_redirects_is_not_followed(allowing_loopback):
    api = allowing_loopback
    target = Endpoint(answer_with(200, b"{}"))
    redirecting = Endpoint(answer_with(307, location=f"{target.url}/v1/chat/completions"))
    try:
        review = open_review(api)
        body = {"base_url": f"{redirecting.url}/v1", "model": "m", "api_key": "sk-judge"}
        assert api.call("POST", f"/api/reviews/{review['id']}/judge", "owner", json=body).status_code == 202
        judge = api.call("GET", f"/api/reviews/{review['id']}", "owner").json()["judge"]
        assert judge["status"] == "failed" and "answered HTTP 307" in judge["error"]
        assert redirecting.seen and target.seen == []
    finally:
        target.close()
        redirecting.close()


def test_only_the_owner_closes_or_judges(api):
    review = open_review(api)
    for path, body in [("/close", None), ("/judge", {"base_url": "http://127.0.0.1:1/v1", "model": "m"})]:
        refused = api.call("POST", f"/api/reviews/{review['id']}{path}", "reviewer", json=body)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_review_owner"
        assert refused.json()["error"]["type"] == "permission_error"
    assert api.call("GET", f"/api/reviews/{review['id']}", "reviewer").json()["status"] == "open"


def test_items_wait_for_the_answers(api, monkeypatch):
    from tunery.service.domain import reviews

    monkeypatch.setattr(reviews, "generate_answers", lambda state, review_id: None)  # answers never come
    review = create(api).json()
    assert review["status"] == "generating"
    waiting = api.call("GET", f"/api/reviews/{review['id']}/items", "owner")
    assert waiting.status_code == 409 and waiting.json()["error"]["code"] == "review_not_open"
    assert api.call("POST", f"/api/reviews/{review['id']}/close", "owner").status_code == 409


def test_a_failed_generation_hides_the_model_name_and_can_be_restarted(api, monkeypatch):
    from tunery.service.domain import reviews
    from tunery.service.errors import ApiError

    async def broken(model, messages, max_tokens, seed):
        raise ApiError(404, f"The model '{model}' does not exist", code="model_not_found")

    monkeypatch.setattr(reviews, "engine_chat", lambda state, project: broken)
    review = api.call("GET", f"/api/reviews/{create(api).json()['id']}", "reviewer").json()
    assert review["status"] == "failed" and review["error"]["message"] == "The model 'model 1' does not exist"
    monkeypatch.setattr(reviews, "engine_chat", lambda state, project: scripted_chat)
    assert api.call("POST", f"/api/reviews/{review['id']}/generate", "reviewer").status_code == 403
    restarted = api.call("POST", f"/api/reviews/{review['id']}/generate", "owner")
    assert restarted.status_code == 202
    assert api.call("GET", f"/api/reviews/{review['id']}", "owner").json()["status"] == "open"


def test_a_server_stopped_mid_generation_answers_the_rest_when_it_starts_again(tmp_path, monkeypatch):
    from sqlalchemy import select

    from tunery.service.domain import reviews
    from tunery.store.tables import ReviewAnswer

    calls: list[tuple[str, str]] = []

    async def counted(model, messages, max_tokens, seed):
        calls.append((model, messages[-1]["content"]))
        return await scripted_chat(model, messages, max_tokens, seed)

    monkeypatch.setattr(reviews, "engine_chat", lambda state, project: counted)
    with make_api(tmp_path) as client:
        api = Api(client)
        review = open_review(api)
        with client.app.state.sessions.begin() as session:  # as if it stopped after the first model
            for answer in session.scalars(select(ReviewAnswer).where(ReviewAnswer.model_index == 1)):
                session.delete(answer)
            session.scalar(
                select(reviews.Review).where(reviews.Review.id == review["id"])
            ).status = "generating"
        keys = api.keys
    calls.clear()
    with make_api(tmp_path) as client:  # the same data folder: a restarted server
        api = Api(client)
        api.keys = keys
        for _ in range(100):
            status = api.call("GET", f"/api/reviews/{review['id']}", "owner").json()["status"]
            if status != "generating":
                break
            time.sleep(0.05)
        assert status == "open"
        assert sorted(calls) == sorted(
            (MODELS[1], p) for p in ("name a fruit", "name a colour", "count to three")
        )
        items = api.call("GET", f"/api/reviews/{review['id']}/items", "owner").json()["data"]
        assert len(items) == 3 and all(voice(MODELS[1]) in str(item) for item in items)


def test_prompts_can_come_from_a_dataset_version(api):
    rows = chat_rows(5)
    rows[0]["messages"].insert(0, {"role": "system", "content": "be brief"})
    content = "".join(json.dumps(row) + "\n" for row in rows).encode()
    assert upload(api.client, api.key("owner"), "orders.jsonl", content).status_code == 200
    review = open_review(api, prompts=None, dataset={"name": "orders", "version": 1}, max_prompts=4)
    assert review["prompt_count"] == 4
    items = api.call("GET", f"/api/reviews/{review['id']}/items", "owner").json()["data"]
    prompts = [[turn["role"] for turn in item["prompt"]] for item in items]
    assert sorted(prompts) == [["system", "user"], ["user"], ["user"], ["user"]]  # the answer is left out
    missing = create(api, prompts=None, dataset={"name": "orders", "version": 9})
    assert missing.status_code == 404


def test_exports_name_the_models_once_closed(api):
    review = open_review(api, prompts=["a fruit", '=HYPERLINK("http://x")'])
    for item in api.call("GET", f"/api/reviews/{review['id']}/items", "reviewer").json()["data"]:
        api.call("POST", f"/api/reviews/{review['id']}/votes", "reviewer",
                 json={"item_id": item["id"], "choice": slot_of(item, MODELS[1]), "note": "+1 better"})  # fmt: skip
    assert api.call("GET", f"/api/reviews/{review['id']}/export", "owner").status_code == 409
    api.call("POST", f"/api/reviews/{review['id']}/close", "owner")

    answer = api.call("GET", f"/api/reviews/{review['id']}/export?format=csv", "owner")
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["winner"] for row in rows] == [MODELS[1]] * 2
    assert {row["note"] for row in rows} == {"'+1 better"}  # no cell a spreadsheet would run
    assert any(row["prompt"].startswith("'=") for row in rows)
    for row in rows:
        assert row[f"model_{row['choice']}"] == MODELS[1]
    document = api.call("GET", f"/api/reviews/{review['id']}/export?format=json", "owner").json()
    assert document["results"]["human"]["ranking"][0]["model"] == MODELS[1] and len(document["rows"]) == 2
    refused = api.call("GET", f"/api/reviews/{review['id']}/export?format=xlsx", "owner")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "query.format"


def test_three_models_are_ranked_by_bradley_terry(api):
    review = open_review(api, models=MODELS, prompts=["p1", "p2"])
    preference = {MODELS[2]: 0, MODELS[0]: 1, MODELS[1]: 2}  # charlie > alpha > bravo
    items = api.call("GET", f"/api/reviews/{review['id']}/items", "owner").json()["data"]
    assert len(items) == 6  # 2 prompts x 3 pairs
    for item in items:
        texts = {a["slot"]: a["text"] for a in item["answers"]}
        best = min(
            texts, key=lambda slot: min(preference[m] for m in MODELS if texts[slot].startswith(voice(m)))
        )
        api.call(
            "POST",
            f"/api/reviews/{review['id']}/votes",
            "owner",
            json={"item_id": item["id"], "choice": best},
        )
    api.call("POST", f"/api/reviews/{review['id']}/close", "owner")
    ranking = api.call("GET", f"/api/reviews/{review['id']}/results", "owner").json()["human"]["ranking"]
    assert [r["model"] for r in ranking] == [MODELS[2], MODELS[0], MODELS[1]]
    assert [(r["wins"], r["losses"]) for r in ranking] == [(4, 0), (2, 2), (0, 4)]
    assert sum(r["strength"] for r in ranking) == pytest.approx(1.0)


def judge_endpoint(decide):
    """A scripted OpenAI-compatible endpoint: `decide(answer_a, answer_b)` gives its reply."""
    import re

    import httpx2

    def handle(request):
        text = json.loads(request.content)["messages"][-1]["content"]
        a, b = re.findall(r"Answer [AB]:\n<<<\n(.*?)\n>>>", text, re.S)
        reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": decide(a, b)}}]}
        return httpx2.Response(200, json=reply)

    return httpx2.MockTransport(handle)


def run_judge(api: Api, review: dict, transport, model: str = "judge-model") -> dict:
    import asyncio

    from tunery.service.domain import review_judge
    from tunery.service.schemas.reviews import JudgeCreate
    from tunery.urlpolicy import UrlPolicy

    body = JudgeCreate(base_url="http://judge.test/v1", model=model, api_key="sk-judge")
    policy = UrlPolicy.of(["judge.test"])  # allowed by name: the name need not resolve
    with api.client.app.state.sessions() as session:
        review_judge.start_judge(session, "team-a", key_id(api, "owner"), review["id"], body, policy)
    asyncio.run(review_judge.run_judge(api.client.app.state.sessions, review["id"], body, policy, transport))
    return api.call("GET", f"/api/reviews/{review['id']}", "owner").json()["judge"]


def key_id(api: Api, who: str) -> str:
    from tunery.service.keys import live_key

    with api.client.app.state.sessions() as session:
        return live_key(session, secret=api.keys[who]).id


def test_the_judge_votes_in_both_orders_apart_from_the_humans(api):
    review = open_review(api)
    prefers_bravo = judge_endpoint(lambda a, b: "A" if a.startswith(voice(MODELS[1])) else "B")
    status = run_judge(api, review, prefers_bravo)
    assert (status["status"], status["done"], status["total"]) == ("succeeded", 6, 6)
    api.call("POST", f"/api/reviews/{review['id']}/close", "owner")
    results = api.call("GET", f"/api/reviews/{review['id']}/results", "owner").json()
    assert results["human"]["votes"] == 0  # kept apart
    judge = results["judge"]
    assert (judge["judge"], judge["votes"], judge["consistent"], judge["invalid"]) == (
        "judge-model",
        3,
        1.0,
        0,
    )
    assert judge["pairs"][0]["b_wins"] == 3 and judge["ranking"][0]["model"] == MODELS[1]


def test_a_judge_that_always_picks_the_first_answer_ties_everything(api):
    review = open_review(api)
    status = run_judge(api, review, judge_endpoint(lambda a, b: "A is better."))
    assert status["status"] == "succeeded"
    api.call("POST", f"/api/reviews/{review['id']}/close", "owner")
    judge = api.call("GET", f"/api/reviews/{review['id']}/results", "owner").json()["judge"]
    assert (
        judge["consistent"] == 0.0 and judge["pairs"][0]["ties"] == 3 and judge["pairs"][0]["win_rate"] == 0.5
    )


def test_judge_replies_are_read_as_one_word():
    from tunery.service.domain.review_judge import parse_reply

    assert [
        parse_reply(text) for text in ("A", " b", "TIE.", "Answer B is better", "A or B", "a tie", "")
    ] == ["a", None, "tie", "b", None, "tie", None]


@pytest.fixture(scope="module")
def two_tiny_models(tmp_path_factory, tiny_tokenizer, tiny_model_dir):
    other = tmp_path_factory.mktemp("tiny-llama-other")
    model = build_tiny_llama(len(tiny_tokenizer), seed=3)
    model.config.pad_token_id = tiny_tokenizer.pad_token_id
    model.config.eos_token_id = tiny_tokenizer.eos_token_id
    model.config.max_position_embeddings = 2048  # room for the judge's prompt: it judges too
    model.save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)
    return [str(tiny_model_dir), str(other)]


def test_the_engine_answers_and_tunerys_own_serving_judges(tmp_path, two_tiny_models):
    """Two tiny random models answer greedily through the engine; the judge is tunery's own /v1."""
    import asyncio

    import httpx2

    from tunery.app import create_app
    from tunery.service.domain import review_judge
    from tunery.service.schemas.reviews import JudgeCreate
    from tunery.settings import Settings
    from tunery.urlpolicy import UrlPolicy

    app = create_app(Settings(data_dir=tmp_path / "service", inference_base_models=two_tiny_models))
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Api(client)
        made = create(api, models=two_tiny_models, prompts=["item 1 quantity 2", "hello"], max_tokens=6)
        review = api.call("GET", f"/api/reviews/{made.json()['id']}", "owner").json()
        assert review["status"] == "open" and review["progress"]["answers_done"] == 4, review
        items = api.call("GET", f"/api/reviews/{review['id']}/items", "owner")
        assert all(isinstance(a["text"], str) for i in items.json()["data"] for a in i["answers"])
        assert not any(name in items.text for name in two_tiny_models)
        judge = two_tiny_models[1]
        body = JudgeCreate(base_url="http://tunery.test/v1", model=judge, api_key=api.keys["owner"])
        policy = UrlPolicy.of(["tunery.test"])
        with client.app.state.sessions() as session:
            review_judge.start_judge(session, "team-a", key_id(api, "owner"), review["id"], body, policy)
        transport = httpx2.ASGITransport(app=app)
        asyncio.run(review_judge.run_judge(client.app.state.sessions, review["id"], body, policy, transport))
        judged = api.call("GET", f"/api/reviews/{review['id']}", "owner").json()["judge"]
        assert (judged["status"], judged["done"]) == ("succeeded", 4), judged  # a random model's verdicts


def test_the_migration_makes_the_review_tables_as_the_models_describe_them(tmp_path):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from tunery.store import connect
    from tunery.store.session import MIGRATIONS
    from tunery.store.tables import Base

    engine = connect(f"sqlite:///{tmp_path / 'reviews.db'}")
    tables = set(inspect(engine).get_table_names())
    assert {"reviews", "review_answers", "review_items", "review_votes", "review_judgements"} <= tables
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    assert not {name for name in inspect(engine).get_table_names() if name.startswith("review")}
