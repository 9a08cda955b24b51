"""The dataset page's mask preview: the first rows as training sees them, drawn from the same domain
call as `GET /api/datasets/{name}/preview`; in process, and once in a real browser (slow)."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import httpx2
import pytest

from tests.conftest import chat_rows, write_jsonl
from tests.data.conftest import qa
from tests.service.conftest import Service

PREVIEW = "/ui/datasets/orders/versions/1/preview"


@pytest.fixture
def uploaded(signed_in, tmp_path):
    rows = [qa('<b onmouseover="x()">bold</b>', "<script>alert(1)</script>"), *chat_rows(11)]
    file = write_jsonl(tmp_path / "orders.jsonl", rows)
    assert signed_in.post("/ui/files", files={"file": ("orders.jsonl", file.read_bytes())}).status_code == 200
    return signed_in


def test_the_dataset_page_has_a_preview_that_loads_itself(uploaded):
    page = uploaded.get("/datasets/orders/versions/1").text
    assert 'id="preview-form"' in page and f'data-url="{PREVIEW}"' in page
    assert 'name="rows" type="number" min="1" max="50" value="5"' in page


def test_the_preview_fragment_shows_the_rows_escaped(uploaded, tiny_model_dir):
    answer = uploaded.get(PREVIEW, params={"model": str(tiny_model_dir), "rows": 12})
    assert answer.status_code == 200, answer.text
    html = answer.text
    assert html.count('class="rowhead"') == 11  # 12 rows, one held out for validation as a job would
    assert "<html" not in html and 'class="tunery-preview"' in html
    assert "<script>" not in html and "<b " not in html and "&lt;" in html
    assert '<span class="t" title="id' in html and '<span class="u" title="id' in html
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_the_preview_fragment_refuses_like_the_api(uploaded, app_client):
    refused = uploaded.get(PREVIEW, params={"model": "/no/such/model"})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
    assert uploaded.get("/ui/datasets/orders/versions/9/preview").status_code == 404
    del app_client.cookies["tunery_session"]
    assert app_client.get(PREVIEW).status_code == 401


@pytest.mark.slow
def test_a_person_sees_the_trained_tokens_on_the_dataset_page(browser, tmp_path, tiny_model_dir, tunery_home):
    server = Service(tmp_path, {"TUNERY_HOME": str(tunery_home)}).start()  # converted models shared
    try:
        context = browser.new_context(base_url=server.url)
        requests: list[str] = []
        context.on("request", lambda request: requests.append(request.url))
        page = context.new_page()
        key = server.key("team-a")
        rows = "".join(json.dumps(row) + "\n" for row in chat_rows(12)).encode()
        uploaded = httpx2.post(
            f"{server.url}/v1/files", headers={"Authorization": f"Bearer {key}"}, data={"purpose": "fine-tune"},
            files={"file": ("orders.jsonl", rows)},
        )  # fmt: skip
        assert uploaded.status_code == 200, uploaded.text
        page.goto("/signin")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/jobs")
        page.goto("/datasets/orders/versions/1")
        page.locator("#preview p").first.wait_for()  # it asked for the default model on its own
        page.get_by_label("Preview with model").fill(str(tiny_model_dir))
        page.get_by_label("Rows").fill("2")
        page.get_by_role("button", name="Show").click()
        page.locator("#preview .tunery-preview .rowhead").nth(1).wait_for(timeout=60_000)
        assert page.locator("#preview .rowhead").count() == 2
        trained = page.locator("#preview pre.tokens").first.locator("span.t").all_inner_texts()
        assert "".join(trained).startswith('{"item": ') and "<|im_end|>" in "".join(trained)
        assert all(urlparse(url).netloc == urlparse(server.url).netloc for url in requests)
        context.close()
    finally:
        server.stop()
