"""Issue 21, findings 3 and 4: the dashboard's own CSRF defence and server-side sessions.

Each test failed on the code before: SameSite=Strict alone let a page on another port of the same
host (same-site) delete a model and upload a file; a foreign Origin was accepted; sign-in took
cross-origin posts; sign-out left the old cookie working; keys could not be revoked but in SQL.
"""

from __future__ import annotations

import pytest

from tests.web.conftest import make_key, sign_in, token_in
from tunery.web.auth import COOKIE

MODEL = "ft:tiny:team-a:ftjob-1"
FOREIGN = {"Origin": "http://127.0.0.1:9999"}
SAME_SITE = {"Sec-Fetch-Site": "same-site"}


@pytest.fixture
def a_model(signed_in):
    from tunery.store.tables import Model

    with signed_in.app.state.sessions.begin() as session:
        session.add(
            Model(id=MODEL, project="team-a", base_model="tiny", path="jobs/ftjob-1/adapter", lineage={})
        )
    return MODEL


def model_ids(client) -> list[str]:
    from tunery.store.tables import Model

    with client.app.state.sessions() as session:
        return [m.id for m in session.query(Model).all()]


def file_count(client) -> int:
    from tunery.store.tables import File

    with client.app.state.sessions() as session:
        return session.query(File).count()


@pytest.mark.parametrize(
    "headers", [FOREIGN, SAME_SITE, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}]
)
def test_a_change_from_another_origin_is_refused_and_changes_nothing(signed_in, a_model, good_file, headers):
    token = signed_in.headers[
        "X-CSRF-Token"
    ]  # even with the right token: the browser says where it came from
    deleted = signed_in.post("/ui/models/delete", data={"id": a_model, "csrf_token": token}, headers=headers)
    assert deleted.status_code == 403 and deleted.json()["error"]["code"] == "cross_origin_refused"
    uploaded = signed_in.post(
        "/ui/files", files={"file": ("orders.jsonl", good_file.read_bytes())}, headers=headers
    )
    assert uploaded.status_code == 403
    assert model_ids(signed_in) == [a_model] and file_count(signed_in) == 0


def test_a_change_without_the_sessions_token_is_refused(signed_in, a_model, good_file):
    signed_in.headers.pop("X-CSRF-Token")
    for data in ({"id": a_model}, {"id": a_model, "csrf_token": "forged"}):
        answer = signed_in.post("/ui/models/delete", data=data, follow_redirects=False)
        assert answer.status_code == 403 and answer.json()["error"]["param"] == "csrf_token"
    assert signed_in.post("/ui/files", files={"file": ("o.jsonl", good_file.read_bytes())}).status_code == 403
    assert signed_in.post("/ui/jobs", json={"model": "m", "training_file": "file-x"}).status_code == 403
    assert model_ids(signed_in) == [a_model] and file_count(signed_in) == 0


def test_the_pages_own_form_and_fetch_still_work(signed_in, a_model, good_file):
    own = {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}
    token = token_in(signed_in.get("/models").text)
    answer = signed_in.post(
        "/ui/models/delete", data={"id": a_model, "csrf_token": token}, headers=own, follow_redirects=False
    )
    assert answer.status_code == 303 and model_ids(signed_in) == []
    assert (
        signed_in.post(
            "/ui/files", files={"file": ("o.jsonl", good_file.read_bytes())}, headers=own
        ).status_code
        == 200
    )


def test_sign_in_refuses_a_cross_origin_post_and_one_without_the_forms_token(app_client, key):
    assert sign_in(app_client, key, **FOREIGN).status_code == 403
    assert sign_in(app_client, key, **SAME_SITE).status_code == 403
    bare = app_client.post("/signin", data={"api_key": key}, follow_redirects=False)
    assert bare.status_code == 403 and "expired" in bare.text
    assert COOKIE not in app_client.cookies


def test_sign_out_ends_the_session_at_once(signed_in):
    old = signed_in.cookies[COOKIE]
    token = signed_in.headers["X-CSRF-Token"]
    assert signed_in.post("/signout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    signed_in.cookies.set(COOKIE, old)  # the old cookie, kept by whoever copied it
    assert signed_in.get("/jobs", follow_redirects=False).status_code == 303
    assert signed_in.get("/ui/jobs/statuses").status_code == 401


def test_sign_out_from_another_origin_is_refused(signed_in):
    token = signed_in.headers["X-CSRF-Token"]
    assert signed_in.post("/signout", data={"csrf_token": token}, headers=FOREIGN).status_code == 403
    assert signed_in.get("/jobs", follow_redirects=False).status_code == 200


def test_revoking_a_key_by_the_api_ends_its_sessions_and_its_api_access(signed_in, key):
    bearer = {"Authorization": f"Bearer {key}"}
    other = {"Authorization": f"Bearer {make_key(signed_in, 'team-b')}"}
    listed = signed_in.get("/api/keys", headers=bearer).json()["data"]
    assert [k["project"] for k in listed] == ["team-a"] and key not in str(listed)
    (mine,) = listed
    assert signed_in.delete(f"/api/keys/{mine['id']}", headers=other).status_code == 404  # not theirs
    assert signed_in.get("/jobs", follow_redirects=False).status_code == 200
    revoked = signed_in.delete(f"/api/keys/{mine['id']}", headers=bearer)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert signed_in.get("/jobs", follow_redirects=False).status_code == 303
    assert signed_in.get("/v1/files", headers=bearer).status_code == 401
    assert signed_in.get("/v1/files", headers=other).status_code == 200


def test_hostile_key_ids_are_a_clear_404_or_400(signed_in, key):
    bearer = {"Authorization": f"Bearer {key}"}
    assert (
        signed_in.delete("/api/keys/key-nope", headers=bearer).json()["error"]["code"] == "api_key_not_found"
    )
    assert signed_in.delete("/api/keys/" + "k" * 5000, headers=bearer).status_code == 400
    assert signed_in.delete("/api/keys/key-x", headers={}).status_code == 401
