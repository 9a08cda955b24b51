"""One function decides whether an API key lets a caller in: `tunery.service.keys.live_key`.

The API's Bearer dependency, the inference endpoints, the dashboard's sign-in and its session
cookie all ask it. With it made to refuse every key, every one of those ways in must refuse: a
second, private key check anywhere would still let the caller in, and fail this test.
"""

from __future__ import annotations

import pytest

from tests.web.conftest import sign_in


@pytest.fixture
def everything_refused(monkeypatch):
    """`live_key` refusing every key, and the calls it got as (secret given, key id given)."""
    import tunery.service.keys as keys

    asked: list[tuple[bool, bool]] = []

    def refuse(session, *, secret=None, key_id=None):
        asked.append((secret is not None, key_id is not None))

    monkeypatch.setattr(keys, "live_key", refuse)
    return asked


def test_the_api_the_inference_endpoints_and_the_dashboard_all_ask_one_key_check(
    signed_in, key, everything_refused
):
    bearer = {"Authorization": f"Bearer {key}"}
    assert signed_in.get("/v1/files", headers=bearer).status_code == 401
    chat = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}]}
    assert signed_in.post("/v1/chat/completions", headers=bearer, json=chat).status_code == 401
    assert signed_in.get("/jobs", follow_redirects=False).status_code == 303  # the session, by its key id
    assert signed_in.get("/ui/jobs/statuses").status_code == 401
    signed_in.cookies.clear()
    answer = sign_in(signed_in, key)
    assert answer.status_code == 401 and "tunery_session" not in answer.headers.get("set-cookie", "")
    assert everything_refused.count((True, False)) == 3  # API, inference, sign-in: by the secret
    assert everything_refused.count((False, True)) == 2  # the page and the action: by the cookie's key id


def test_the_same_key_gets_in_everywhere_when_the_check_lets_it(signed_in, key):
    bearer = {"Authorization": f"Bearer {key}"}
    assert signed_in.get("/v1/files", headers=bearer).status_code == 200
    assert signed_in.get("/jobs", follow_redirects=False).status_code == 200
    assert signed_in.get("/ui/jobs/statuses").status_code == 200
