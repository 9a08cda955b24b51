"""The dashboard's server side, in-process: sign-in, pages per project, and the API's own checks and errors."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest

from tests.web.conftest import sign_in
from tunery.web.auth import COOKIE

PAGES = ("/jobs", "/jobs/new", "/datasets", "/models", "/compare", "/playground")


@pytest.mark.parametrize("path", PAGES)
def test_a_page_without_a_session_sends_you_to_sign_in_and_back(app_client, path):
    answer = app_client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/signin?next={path}"


def test_signing_in_sets_a_strict_httponly_cookie_that_does_not_hold_the_key(app_client, key):
    answer = sign_in(app_client, key, "/models")
    assert answer.status_code == 303 and answer.headers["location"] == "/models"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert key not in cookie and key.removeprefix("tk-") not in cookie
    for path in PAGES:
        page = app_client.get(path)
        assert page.status_code == 200, path
        assert "team-a" in page.text and key not in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]


def test_a_wrong_key_is_refused_on_the_page_with_what_to_do(app_client):
    answer = sign_in(app_client, "tk-wrong")
    assert answer.status_code == 401 and COOKIE not in answer.headers.get("set-cookie", "")
    assert "tunery keys create --project" in answer.text


def test_a_forged_cookie_or_a_revoked_key_ends_the_session(signed_in):
    from tunery.store.tables import ApiKey, WebSession

    good = signed_in.cookies["tunery_session"]
    signed_in.cookies.clear()
    signed_in.cookies.set("tunery_session", good[:-2] + ("AA" if not good.endswith("AA") else "BB"))
    assert signed_in.get("/jobs", follow_redirects=False).status_code == 303
    signed_in.cookies.clear()
    signed_in.cookies.set("tunery_session", good)
    assert signed_in.get("/jobs", follow_redirects=False).status_code == 200
    with signed_in.app.state.sessions.begin() as session:
        (row,) = session.query(WebSession).all()
        session.get(ApiKey, row.key_id).revoked = True
    assert signed_in.get("/jobs", follow_redirects=False).status_code == 303


def test_sign_in_only_sends_you_to_a_path_on_this_server():
    from tunery.web.auth import safe_next

    assert safe_next("/jobs/ftjob-1?x=1") == "/jobs/ftjob-1?x=1"
    for elsewhere in ("https://example.com/", "//example.com/", "/\\example.com", "", None):
        assert safe_next(elsewhere) == "/jobs"


def test_sessions_expire(app_client, key):
    from tunery.service.keys import live_key
    from tunery.web.auth import LIFETIME_SECONDS, signed_in, start_session

    with app_client.app.state.sessions.begin() as db:
        token = start_session(db, live_key(db, secret=key).id, now=1000)
    with app_client.app.state.sessions() as db:
        assert signed_in(db, token, now=1000 + LIFETIME_SECONDS - 1) is not None
        assert signed_in(db, token, now=1000 + LIFETIME_SECONDS + 1) is None
        assert signed_in(db, token + "x", now=1000) is None


def test_the_dashboards_requests_need_a_session_too(app_client):
    for method, path in (("get", "/ui/jobs/statuses"), ("post", "/ui/jobs"), ("get", "/ui/estimate?model=x")):
        answer = getattr(app_client, method)(path)
        assert answer.status_code == 401, path
        assert answer.json()["error"]["code"] == "not_signed_in"


def test_a_broken_upload_shows_each_bad_line_and_stores_nothing(signed_in, broken_file):
    answer = signed_in.post("/ui/files", files={"file": ("broken.jsonl", broken_file.read_bytes())})
    assert answer.status_code == 400
    assert "Refused" in answer.text and "2 of 3 rows have errors" in answer.text
    assert [int(n) for n in _cells(answer.text, "line")] == [2, 3]
    assert "No datasets yet" in signed_in.get("/datasets").text


def test_an_upload_becomes_a_dataset_version_with_its_report(signed_in, good_file):
    answer = signed_in.post("/ui/files", files={"file": ("orders.jsonl", good_file.read_bytes())})
    assert answer.status_code == 200, answer.text
    assert 'href="/datasets/orders/versions/1"' in answer.text
    page = signed_in.get("/datasets/orders/versions/1")
    assert page.status_code == 200 and "12 rows, chat" in page.text
    changed = good_file.read_text() + good_file.read_text().splitlines(keepends=True)[0]
    signed_in.post("/ui/files", files={"file": ("orders.jsonl", changed.encode())})
    versions = signed_in.get("/datasets/orders/versions/2").text
    assert 'href="/datasets/orders/versions/1"' in versions and "Exact: lines 1, 13" in versions


def test_the_token_length_histogram_counts_every_row(signed_in, good_file, tiny_model_dir):
    signed_in.post("/ui/files", files={"file": ("orders.jsonl", good_file.read_bytes())})
    answer = signed_in.get(
        "/ui/datasets/orders/versions/1/lengths", params={"model": str(tiny_model_dir), "max_length": 20}
    )
    assert answer.status_code == 200, answer.text
    counts = [int(n) for n in re.findall(r'<span class="bar"[^>]*></span> (\d+)', answer.text)]
    assert sum(counts) == 12 and "(12 rows;" in answer.text
    missing = signed_in.get("/ui/datasets/orders/versions/1/lengths", params={"model": "/no/such/model"})
    assert missing.status_code == 404 and "/no/such/model" in missing.json()["error"]["message"]


def test_histogram_bins_cover_every_value_once():
    from tunery.web.actions import histogram

    bins = histogram([3, 4, 4, 10, 27], bins=4)
    assert sum(b["count"] for b in bins) == 5
    assert bins[0]["low"] == 3 and bins[-1]["high"] >= 27
    assert all(b["high"] + 1 == nxt["low"] for b, nxt in zip(bins, bins[1:], strict=False))
    assert histogram([]) == []


BAD_JOBS = [
    {"training_file": "file-x"},  # no model
    {"model": "tiny", "training_file": "file-none"},  # a file that is not there
    {"model": "tiny", "training_file": "FILE", "tunery": {"lora": {"alpah": 8}}},  # a mistyped key
    {"model": "tiny", "training_file": "FILE", "hyperparameters": {"batch_size": 0}},  # out of range
    {"model": "tiny", "training_file": "FILE", "tunery": {"output_dir": "/tmp"}},  # set by the job
    {"model": "tiny", "training_file": "FILE", "surprise": 1},  # not a field
]


@pytest.mark.parametrize("body", BAD_JOBS)
def test_the_job_form_gets_exactly_the_apis_error(signed_in, key, good_file, body):
    uploaded = signed_in.post(
        "/v1/files",
        files={"file": ("orders.jsonl", good_file.read_bytes())},
        data={"purpose": "fine-tune"},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    body = json.loads(json.dumps(body).replace('"FILE"', json.dumps(uploaded["id"])))
    api = signed_in.post("/v1/fine_tuning/jobs", json=body, headers={"Authorization": f"Bearer {key}"})
    form = signed_in.post("/ui/jobs", json=body)
    assert api.status_code == form.status_code and api.status_code in (400, 404)
    assert form.json() == api.json() and form.json()["error"]["message"]


def test_the_new_job_page_offers_every_method_with_its_explanation(signed_in, good_file):
    from tunery.config.registry import method_spec
    from tunery.methods import METHODS

    signed_in.post("/ui/files", files={"file": ("orders.jsonl", good_file.read_bytes())})
    page = signed_in.get("/jobs/new").text
    for name in METHODS:
        assert f'<option value="{name}" data-summary="' in page
    assert method_spec("lora").summary in page
    assert "orders v1 (12 rows)" in page
    for label in ("Base model", "Epochs", "Batch size", "Learning-rate multiplier", "Validation split"):
        assert f">{label}</label>" in page


def test_the_estimate_counts_trainable_parameters_of_each_method(signed_in, tiny_model_dir):
    rows = signed_in.get("/ui/estimate", params={"model": str(tiny_model_dir)}).json()
    lora = next(r for r in rows if r["method"] == "lora")
    full = next(r for r in rows if r["method"] == "full")
    assert 0 < lora["trainable"] < full["trainable"] == full["total"]
    missing = signed_in.get("/ui/estimate", params={"model": "/no/such/model"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"


def _job_with_events(client, project: str, status: str = "succeeded") -> str:
    from tunery.jobs.lifecycle import add_event
    from tunery.store.tables import Job, new_id

    job_id = new_id("ftjob")
    with client.app.state.sessions.begin() as session:
        job = Job(
            id=job_id, project=project, model="tiny", training_file="file-x", seed=1, hyperparameters={},
            method={"type": "supervised"}, config={"method": "lora"}, status=status, run_dir=f"jobs/{job_id}",
        )  # fmt: skip
        session.add(job)
        session.flush()
        for step in (1, 2, 3):
            add_event(
                session, job, f"Step {step}", type="metrics", data={"step": step, "train_loss": 4.0 - step}
            )
        add_event(session, job, "done", data={"status": status})
    return job_id


def test_the_live_stream_sends_every_event_in_order_then_the_end(signed_in):
    job_id = _job_with_events(signed_in, "team-a")
    with signed_in.stream("GET", f"/ui/jobs/{job_id}/stream") as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = "".join(answer.iter_text())
    messages = [m for m in text.split("\n\n") if "data: " in m]
    kinds = [line.split(": ", 1)[1] for m in messages for line in m.splitlines() if line.startswith("event:")]
    assert kinds == ["job", "job", "job", "job", "end"]
    steps = [json.loads(m.split("data: ", 1)[1])["event"]["data"].get("step") for m in messages[:3]]
    assert steps == [1, 2, 3]
    ids = [int(line.split(": ")[1]) for m in messages for line in m.splitlines() if line.startswith("id:")]
    with signed_in.stream(
        "GET", f"/ui/jobs/{job_id}/stream", headers={"Last-Event-ID": str(ids[1])}
    ) as resumed:
        assert "".join(resumed.iter_text()).count("event: job") == 2  # only what it had not seen


def test_the_job_page_shows_the_overfitting_warning_of_the_run(signed_in, settings):
    job_id = _job_with_events(signed_in, "team-a", status="running")
    run_dir = settings.artifacts / "jobs" / job_id
    run_dir.mkdir(parents=True)
    warning = "overfitting: validation loss rose 2 evaluations in a row (…)"
    (run_dir / "run.json").write_text(
        json.dumps({"warnings": [{"step": 40, "kind": "overfitting", "message": warning}]})
    )
    page = signed_in.get(f"/jobs/{job_id}").text
    assert re.search(r'<div id="overfitting" class="warning" role="alert" >\s*<p>Step 40: overfitting', page)
    assert '<button type="button" id="cancel" >' in page  # still running: it can be cancelled


def test_the_job_form_starts_from_the_model_asked_for(signed_in):
    page = signed_in.get("/jobs/new", params={"model": "/models/mine"}).text
    assert 'id="model" name="model" list="base-models" value="/models/mine"' in page
    assert 'value="smollm2-135m-instruct"' in signed_in.get("/jobs/new").text


def test_another_projects_job_is_not_found_on_the_page_and_the_stream(signed_in):
    other = _job_with_events(signed_in, "team-b")
    page = signed_in.get(f"/jobs/{other}")
    assert page.status_code == 404 and f"no fine_tuning.job with id &#39;{other}&#39;" in page.text
    assert signed_in.get(f"/ui/jobs/{other}/stream").status_code == 404
    assert other not in signed_in.get("/jobs").text


@pytest.fixture
def registered_model(signed_in, settings) -> str:
    from tunery.store.tables import Model

    adapter = settings.artifacts / "jobs" / "ftjob-1" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    lineage = {
        "base_model": "tiny-base", "dataset": {"name": "orders", "version": 2, "content_hash": "ab" * 32},
        "config": {"method": "lora", "lora": {"r": 4}}, "metrics": {"train_loss": 0.5, "steps": 6},
    }  # fmt: skip
    with signed_in.app.state.sessions.begin() as session:
        session.add(
            Model(
                id="ft:tiny-base:orders:ftjob-1", project="team-a", job_id="ftjob-1", base_model="tiny-base",
                path="jobs/ftjob-1/adapter", lineage=lineage,
            )
        )  # fmt: skip
    return "ft:tiny-base:orders:ftjob-1"


def test_the_models_page_shows_lineage_and_exports_and_deletes(signed_in, registered_model):
    page = signed_in.get("/models").text
    assert registered_model in page and "tiny-base" in page
    assert 'href="/datasets/orders/versions/2"' in page and "train_loss" in page
    exported = signed_in.get("/ui/models/export", params={"id": registered_model})
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    assert sorted(names) == ["adapter/adapter_config.json", "adapter/adapter_model.safetensors"]
    deleted = signed_in.post("/ui/models/delete", data={"id": registered_model}, follow_redirects=False)
    assert deleted.status_code == 303
    assert registered_model not in signed_in.get("/models").text
    assert signed_in.get("/ui/models/export", params={"id": registered_model}).status_code == 404


def test_the_playground_offers_the_base_and_preselects_the_model(signed_in, registered_model):
    page = signed_in.get("/playground", params={"model": registered_model}).text
    assert '<option value="tiny-base" selected>' in page
    assert f'<option value="{registered_model}" selected>' in page


def test_static_files_are_served_with_the_charts_licence(app_client):
    assert app_client.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
    assert "MIT License" in app_client.get("/static/vendor/uplot/LICENSE").text


def _cells(html: str, css_class: str) -> list[str]:
    return re.findall(f'<td class="{css_class}">(.*?)</td>', html)
