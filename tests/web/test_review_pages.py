"""The dashboard's blind review pages in-process: sign-in, CSRF and origin checks on votes, no model
name on any page or answer before the close, the results page after it, another project's review 404.

Answers come from a scripted engine (tests/service/test_reviews.py), so these run in seconds; the
whole flow in Chromium is tests/web/test_review_browser.py."""

from __future__ import annotations

import re

import pytest

from tests.service.test_reviews import MODELS, scripted_chat
from tests.web.conftest import make_key, sign_in, token_in


@pytest.fixture
def settings(tmp_path):
    from tunery.settings import Settings

    return Settings(data_dir=tmp_path / "service", poll_seconds=0.2, inference_base_models=MODELS)


@pytest.fixture(autouse=True)
def scripted_engine(monkeypatch):
    from tunery.service.domain import reviews

    monkeypatch.setattr(reviews, "engine_chat", lambda state, project: scripted_chat)


def new_review(client, **body) -> str:
    made = client.post("/ui/reviews", json={"models": MODELS[:2], "prompts": ["a fruit", "a colour"], **body})
    assert made.status_code == 200, made.text
    return made.json()["id"]


def test_review_pages_send_you_to_sign_in(app_client):
    for path in ("/reviews", "/reviews/new", "/reviews/review-x", "/reviews/review-x/results"):
        answer = app_client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin"), path
    assert app_client.post("/ui/reviews", json={}).status_code in (401, 403)


def test_the_new_review_page_offers_the_projects_models(signed_in):
    page = signed_in.get("/reviews/new")
    assert page.status_code == 200
    assert all(f'value="{model}"' in page.text for model in MODELS)
    refused = signed_in.post("/ui/reviews", json={"models": MODELS[:1], "prompts": ["hi"]})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "models"


def test_a_vote_needs_the_csrf_token_and_our_origin(signed_in):
    review_id = new_review(signed_in)
    item = re.findall(r'data-item="([^"]+)"', signed_in.get(f"/reviews/{review_id}").text)[0]
    vote = {"item_id": item, "choice": "a"}
    token = signed_in.headers.pop("X-CSRF-Token")
    refused = signed_in.post(f"/ui/reviews/{review_id}/votes", json=vote)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_token_invalid"
    foreign = {"X-CSRF-Token": token, "Origin": "http://127.0.0.1:9999"}
    refused = signed_in.post(f"/ui/reviews/{review_id}/votes", json=vote, headers=foreign)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_origin_refused"
    assert signed_in.get(f"/ui/reviews/{review_id}").json()["progress"]["votes"] == 0
    accepted = signed_in.post(f"/ui/reviews/{review_id}/votes", json=vote, headers={"X-CSRF-Token": token})
    assert accepted.status_code == 200 and accepted.json()["choice"] == "a"


def test_no_page_names_a_model_until_the_close_then_the_results_do(signed_in):
    review_id = new_review(signed_in)
    page = signed_in.get(f"/reviews/{review_id}")
    items = re.findall(r'<article[^>]* data-item="([^"]+)"', page.text)
    assert len(items) == 2 and page.text.count("Save vote") == 2
    shown = [page.text, signed_in.get("/reviews").text, signed_in.get(f"/ui/reviews/{review_id}").text]
    shown.append(
        signed_in.post(f"/ui/reviews/{review_id}/votes", json={"item_id": items[0], "choice": "b"}).text
    )
    early = signed_in.get(f"/reviews/{review_id}/results")
    assert early.status_code == 409 and "owner closes it" in early.text
    shown += [early.text, signed_in.get(f"/ui/reviews/{review_id}/export").text]
    assert not [model for text in shown for model in MODELS if model in text]

    assert signed_in.post(f"/ui/reviews/{review_id}/close").json()["status"] == "closed"
    results = signed_in.get(f"/reviews/{review_id}/results")
    assert results.status_code == 200 and all(model in results.text for model in MODELS[:2])
    assert 'id="human-ranking"' in results.text
    export = signed_in.get(f"/ui/reviews/{review_id}/export?format=csv")
    assert export.headers["content-disposition"] == f'attachment; filename="{review_id}.csv"'


def test_another_reviewer_of_the_project_may_not_close(app_client, signed_in):
    review_id = new_review(signed_in)
    signed_in.post("/signout", data={"csrf_token": signed_in.headers["X-CSRF-Token"]})
    assert sign_in(app_client, make_key(app_client, "team-a"), f"/reviews/{review_id}").status_code == 303
    page = app_client.get(f"/reviews/{review_id}")
    assert 'id="close"' not in page.text and 'id="judge-form"' not in page.text
    app_client.headers["X-CSRF-Token"] = token_in(page.text)
    refused = app_client.post(f"/ui/reviews/{review_id}/close")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_review_owner"


def test_another_projects_review_is_not_found(app_client, signed_in):
    review_id = new_review(signed_in)
    signed_in.post("/signout", data={"csrf_token": signed_in.headers["X-CSRF-Token"]})
    assert sign_in(app_client, make_key(app_client, "team-b"), "/reviews").status_code == 303
    assert app_client.get(f"/reviews/{review_id}").status_code == 404
    assert app_client.get(f"/reviews/{review_id}/results").status_code == 404
    assert review_id not in app_client.get("/reviews").text


def test_a_long_review_pages_its_items_and_opens_where_the_reviewer_left_off(signed_in):
    from tunery.web.reviews import PAGE_ITEMS

    review_id = new_review(signed_in, prompts=[f"item {i}" for i in range(PAGE_ITEMS + 5)])
    article = r'<article[^>]* data-item="([^"]+)"'
    first = signed_in.get(f"/reviews/{review_id}").text
    assert len(re.findall(article, first)) == PAGE_ITEMS and "Page 1 of 2" in first
    assert f"Item 1 of {PAGE_ITEMS + 5}" in first and 'href="?page=2"' in first
    second = signed_in.get(f"/reviews/{review_id}?page=2").text
    rest = re.findall(article, second)
    assert len(rest) == 5 and not set(rest) & set(re.findall(article, first))
    for item in re.findall(article, first):  # vote on the whole first page
        assert signed_in.post(
            f"/ui/reviews/{review_id}/votes", json={"item_id": item, "choice": "tie"}
        ).is_success
    assert (
        re.findall(article, signed_in.get(f"/reviews/{review_id}").text) == rest
    )  # back where they left off
    assert re.findall(article, signed_in.get(f"/reviews/{review_id}?page=99").text) == rest  # clamped
