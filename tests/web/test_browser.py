"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright against
`tunery serve` on loopback (SQLite + local worker), as a person would use it.

Sign in, upload a broken file and see its bad lines, upload a good one by drag-and-drop,
launch a job on a tiny model, watch its loss curve grow without a reload, see it succeed,
find the model, compare, and chat with it and its base model side by side. Every page is
saved as a screenshot under tests/web/artifacts/ (or $TUNERY_TEST_ARTIFACTS), and every
request the browser made must have gone to the server itself.

`make test` installs Debian's `chromium`; where it is missing this test is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import httpx2
import pytest

from tests.conftest import chat_rows, write_jsonl
from tests.service.conftest import Service
from tests.web.conftest import BROKEN_ROWS

pytestmark = pytest.mark.slow
ARTIFACTS = Path(os.environ.get("TUNERY_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
# A job long enough to watch: ~160 quick steps on the tiny model, validation every 20; lr 5 x 1e-3 (LoRA default).
JOB_FIELDS = {
    "#lora-r": "4", "#lora-alpha": "8", "#validation_split": "0.25", "#max_length": "64", "#batch_size": "2",
    "#lr_mult": "5", "#max_steps": "160", "#eval_every": "20", "#save_every": "80", "#suffix": "orders",
}  # fmt: skip
EXTRA = {"train": {"warmup_ratio": 0.0, "threads": 1, "seed": 7}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Service(tmp_path_factory.mktemp("dashboard"), {}).start()
    yield running
    running.stop()


class Visit:
    """One browser tab on the dashboard: every request it makes is kept, every page saved as a picture."""

    def __init__(self, browser, server: Service):
        self.origin = server.url
        self.context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(30_000)
        self.requests: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page = self.context.new_page()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def screenshot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def elsewhere(self) -> list[str]:
        """Requests that did not go to this server (data: URLs never leave the page)."""
        server = urlparse(self.origin).netloc
        return [
            url for url in self.requests if urlparse(url).scheme != "data" and urlparse(url).netloc != server
        ]


@pytest.fixture(scope="module")
def visit(browser, server):
    opened = Visit(browser, server)
    yield opened
    opened.context.close()


def test_a_person_fine_tunes_and_chats_in_the_browser(visit, server, tiny_model_dir, tmp_path):
    page, key = visit.page, server.key("team-a")

    sign_in(visit, key)
    upload_broken_then_good_data(visit, tmp_path)
    look_at_token_lengths(visit, tiny_model_dir)
    job_id = launch_a_job(visit, tiny_model_dir)
    model = watch_the_job_succeed(visit, job_id)
    second = launch_a_second_job_by_api(server, key, job_id)
    browse_jobs_and_models(visit, job_id, model)
    compare(visit, server, key, [job_id, second])
    other_model = api(server, key, "GET", f"/v1/fine_tuning/jobs/{second}")["fine_tuned_model"]
    chat_side_by_side(visit, model, other_model, str(tiny_model_dir))
    delete_the_model(visit, model)
    fits_a_phone(visit)

    assert key not in page.content()
    assert not [url for url in visit.requests if key in url]
    assert visit.elsewhere() == [], "the pages made requests outside the server"
    print(f"\nscreenshots: {ARTIFACTS}")


def wait_until(page, check, seconds: float, what: str):
    """Poll `check` from the test (the pages' CSP forbids the eval that wait_for_function uses)."""
    for _ in range(int(seconds * 4)):
        value = check()
        if value:
            return value
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def sign_in(visit: Visit, key: str) -> None:
    page = visit.page
    page.goto("/jobs")
    assert urlparse(page.url).path == "/signin"
    visit.screenshot("01-signin")
    page.get_by_label("API key").fill("tk-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    assert "not valid" in page.get_by_role("alert").inner_text()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/jobs")
    (cookie,) = [c for c in visit.context.cookies() if c["name"] == "tunery_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and key not in cookie["value"]
    assert key not in page.content()


def upload_broken_then_good_data(visit: Visit, tmp_path: Path) -> None:
    page = visit.page
    page.get_by_role("link", name="Datasets").click()
    broken = tmp_path / "broken.jsonl"
    broken.write_text(BROKEN_ROWS, encoding="utf-8")
    page.set_input_files("#upload-file", str(broken))  # the file picker
    refused = page.locator("#upload-result .refused")
    refused.wait_for()
    assert "2 of 3 rows have errors" in refused.inner_text()
    assert page.locator("#upload-result table.errors td.line").all_inner_texts() == ["2", "3"]
    visit.screenshot("02-datasets-refused")

    good = write_jsonl(tmp_path / "orders.jsonl", varied_chats(48))
    drop_file(page, "#upload-form", good)  # drag-and-drop
    page.locator("#upload-result .accepted").wait_for()
    visit.screenshot("03-datasets-accepted")
    page.get_by_role("link", name="orders version 1").click()
    page.wait_for_url("**/datasets/orders/versions/1")
    assert "48 rows, chat" in page.content()


def varied_chats(n: int) -> list[dict]:
    """The tests' order chats, each asked a little differently, so their lengths spread."""
    rows = chat_rows(n)
    for i, row in enumerate(rows):
        row["messages"][0]["content"] = "please " * (i % 9) + row["messages"][0]["content"] + f" #{i}"
    return rows


def drop_file(page, selector: str, path: Path) -> None:
    """What dropping a file from the desktop does: a drop event whose DataTransfer holds the file."""
    page.evaluate(
        """([selector, name, text]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([text], name, {type: "application/jsonl"}));
            const zone = document.querySelector(selector);
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
            }
        }""",
        [selector, path.name, path.read_text(encoding="utf-8")],
    )


def look_at_token_lengths(visit: Visit, model_dir: Path) -> None:
    page = visit.page
    page.get_by_label("Model", exact=True).fill(str(model_dir))
    page.get_by_label("max_length").fill("64")
    page.get_by_role("button", name="Count tokens").click()
    page.locator("#lengths figure.histogram").wait_for(timeout=60_000)
    counts = page.locator("#lengths tbody td").all_inner_texts()
    assert sum(int(text.split()[-1]) for text in counts) == 48
    visit.screenshot("04-dataset-version")


def launch_a_job(visit: Visit, model_dir: Path) -> str:
    page = visit.page
    page.goto(f"/jobs/new?model={model_dir}")
    assert page.get_by_label("Base model").input_value() == str(model_dir)
    estimate = page.locator("#method-estimate")
    wait_until(page, lambda: estimate.inner_text().startswith("Trains"), 60, "the parameter estimate")
    assert re.search(r"Trains [\d,]+ of [\d,]+ parameters", estimate.inner_text())
    assert "Low-rank adapters" in page.locator("#method-summary").inner_text()
    for selector, value in JOB_FIELDS.items():
        page.fill(selector, value)

    page.fill("#extra", json.dumps({"lora": {"alpah": 8}}))  # a typo: refused as the API refuses it
    page.get_by_role("button", name="Launch job").click()
    error = page.locator("#form-error")
    error.wait_for()
    assert "did you mean 'lora.alpha'" in error.inner_text()
    visit.screenshot("05-new-job-error")

    page.fill("#extra", json.dumps(EXTRA))
    page.get_by_role("button", name="Launch job").click()
    page.wait_for_url(re.compile(r".*/jobs/ftjob-[0-9a-f]+$"))
    return page.url.rsplit("/", 1)[1]


def watch_the_job_succeed(visit: Visit, job_id: str) -> str:
    page = visit.page
    page.evaluate("window.stillTheSamePage = true")
    chart = page.locator("#loss-chart")

    def points() -> int:
        return int(chart.get_attribute("data-points"))

    first = wait_until(page, points, 120, "the first loss point")
    wait_until(page, lambda: points() > first, 60, "more loss points")
    assert page.locator("#loss-chart canvas").count() == 1
    visit.screenshot("06-job-running")

    head = page.locator("#job")
    wait_until(page, lambda: head.get_attribute("data-done") == "true", 180, "the job to finish")
    assert page.evaluate("window.stillTheSamePage") is True, "the job page reloaded"
    assert page.locator("#job-status").inner_text() == "succeeded"
    assert points() > first + 1
    assert page.locator("#now-val").inner_text() != "–"  # validation loss arrived too
    assert page.locator("#checkpoints tbody tr").count() >= 1
    assert "train_loss" in page.locator("#evaluation").inner_text()
    assert "New fine-tuned model created" in page.locator("#events").inner_text()
    visit.screenshot("07-job-succeeded")
    return page.locator("#job-model-link").inner_text()


def api(server: Service, key: str, method: str, path: str, body: dict | None = None) -> dict:
    answer = httpx2.request(
        method, server.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def launch_a_second_job_by_api(server: Service, key: str, first: str) -> str:
    """The same data with a larger adapter, so Compare has a config key that differs."""
    job = api(server, key, "GET", f"/v1/fine_tuning/jobs/{first}")
    tunery = {"lora": {"r": 8, "alpha": 16}, "data": {"max_length": 64, "validation_split": 0.25}}
    tunery["train"] = {"max_steps": 40, "eval_every": 10, "batch_size": 2, "lr": 5e-3, **EXTRA["train"]}
    body = {"model": job["model"], "training_file": job["training_file"], "suffix": "r8", "tunery": tunery}
    return api(server, key, "POST", "/v1/fine_tuning/jobs", body)["id"]


def browse_jobs_and_models(visit: Visit, job_id: str, model: str) -> None:
    page = visit.page
    page.get_by_role("link", name="Jobs", exact=True).click()
    row = page.locator(f'tr[data-job="{job_id}"]')
    assert row.locator("[data-status]").inner_text() == "succeeded"
    visit.screenshot("08-jobs")

    page.get_by_role("link", name="Models").click()
    card = page.locator(f'article[data-model="{model}"]')
    assert "orders v1" in card.inner_text() and "lora" in card.inner_text()
    with page.expect_download() as download:
        card.get_by_role("link", name="Export adapter (.zip)").click()
    names = zipfile.ZipFile(download.value.path()).namelist()
    assert "adapter/adapter_config.json" in names
    visit.screenshot("09-models")


def compare(visit: Visit, server: Service, key: str, job_ids: list[str]) -> None:
    page = visit.page
    for job_id in job_ids:
        status = f"/v1/fine_tuning/jobs/{job_id}"
        wait_until(page, lambda: api(server, key, "GET", status)["status"] == "succeeded", 120, job_id)  # noqa: B023
    page.get_by_role("link", name="Compare").click()
    for job_id in job_ids:
        page.get_by_label(re.compile(job_id)).check()
    page.get_by_role("button", name="Compare").click()
    page.locator("#compare-chart canvas").wait_for()
    assert int(page.locator("#compare-chart").get_attribute("data-points")) > 160  # both runs' losses
    assert "train_loss" in page.locator("#compare-metrics").inner_text()
    differing = page.locator("#compare-config tbody th").all_inner_texts()
    assert {"lora.r", "lora.alpha", "train.max_steps"} <= set(differing)
    visit.screenshot("10-compare")


def chat_side_by_side(visit: Visit, model: str, other_model: str, base: str) -> None:
    """The base model and two fine-tuned ones answer one message, each streaming into its panel."""
    page = visit.page
    page.goto(f"/playground?model={model}&model={other_model}")
    assert page.locator("#slot-0").input_value() == base
    assert page.locator("#slot-1").input_value() == model
    assert page.locator("#slot-2").input_value() == other_model
    streamed: list[str] = []
    page.on(
        "response",
        lambda r: streamed.append(r.headers.get("content-type", "")) if "/ui/chat" in r.url else None,
    )
    page.get_by_label("Max tokens").fill("12")
    page.get_by_label("Message", exact=True).fill("item 3 quantity 2")
    page.get_by_role("button", name="Send").click()
    chunks = {}
    for name in (base, model, other_model):
        panel = page.locator(f'section.panel[data-model="{name}"]')
        wait_until(page, lambda: panel.get_attribute("data-state") == "done", 120, f"{name}'s answer")  # noqa: B023
        chunks[name] = int(panel.get_attribute("data-chunks"))
        assert chunks[name] >= 1, f"{name}: no answer arrived"
        assert panel.locator(".turn.assistant").text_content()  # a random tiny model may answer in newlines
    # every answer came over SSE; a random tiny model may stop after one token, so not every
    # panel need show several chunks, but the three together must have streamed
    assert streamed and all(kind.startswith("text/event-stream") for kind in streamed)
    assert sum(chunks.values()) > len(chunks), f"nothing streamed in pieces: {chunks}"
    visit.screenshot("11-playground")


def delete_the_model(visit: Visit, model: str) -> None:
    page = visit.page
    page.goto("/models")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f'article[data-model="{model}"]').get_by_role(
        "button", name="Delete from the registry"
    ).click()
    page.wait_for_url("**/models")
    assert page.locator(f'article[data-model="{model}"]').count() == 0


def fits_a_phone(visit: Visit) -> None:
    page = visit.page
    page.set_viewport_size({"width": 390, "height": 844})
    for path, name in (
        ("/jobs", "12-phone-jobs"),
        ("/jobs/new", "13-phone-new-job"),
        ("/playground", "14-phone-playground"),
    ):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (
            f"{path} overflows"
        )
        visit.screenshot(name)
