"""A blind A/B review in a real browser (Debian's Chromium through Playwright, against `tunery serve`):
the owner creates it on the dashboard, two reviewers with keys of their own vote, the owner closes
it, and the results page names the models.

Every response the reviewers' browsers receive (pages, scripts, styles, JSON, headers) is recorded
with `context.on("response")` and searched for the models' names (full id and folder name); so is
everything the owner's browser gets after creating the review. None may name a model before the
review is closed; the results page must name both afterwards.

The models are two tiny random llamas served as base models (`TUNERY_INFERENCE_BASE_MODELS`), or
the ones named by `TUNERY_REVIEW_MODELS` (a JSON list, e.g. for real answers in the screenshot).
`TUNERY_SCREENSHOTS=docs/img` saves the review page as docs/img/review.png.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import build_tiny_llama
from tests.service.conftest import Service

pytestmark = pytest.mark.slow
ARTIFACTS = Path(os.environ.get("TUNERY_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
PROMPTS = ["Name a fruit that is yellow.", "What is 2 + 3?", "Say hello in French."]
NAMED = os.environ.get("TUNERY_REVIEW_MODELS")
MAX_TOKENS = "48" if NAMED else "12"  # real models get room for a sentence


@pytest.fixture(scope="module")
def review_models(tmp_path_factory, tiny_tokenizer) -> list[str]:
    if NAMED:
        return json.loads(NAMED)
    folders = []
    for seed, name in ((1, "quokka-answerer"), (2, "wombat-answerer")):
        folder = tmp_path_factory.mktemp(name)
        model = build_tiny_llama(len(tiny_tokenizer), seed=seed)
        model.config.pad_token_id = tiny_tokenizer.pad_token_id
        model.config.eos_token_id = tiny_tokenizer.eos_token_id
        model.save_pretrained(folder)
        tiny_tokenizer.save_pretrained(folder)
        folders.append(str(folder))
    return folders


@pytest.fixture(scope="module")
def server(tmp_path_factory, review_models):
    env = {"TUNERY_INFERENCE_BASE_MODELS": json.dumps(review_models)}
    running = Service(tmp_path_factory.mktemp("review"), env).start()
    yield running
    running.stop()


def names_of(models: list[str]) -> list[str]:
    """What would give a model away: its id and, for a folder, the folder's name."""
    return sorted({text for model in models for text in (model, Path(model).name) if len(text) >= 4})


class Browser:
    """One person's browser: its own context (cookies), every response it receives kept with its body."""

    def __init__(self, browser, server: Service, who: str):
        self.who, self.origin = who, server.url
        self.context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(30_000)
        self.seen: list[tuple[str, str]] = []  # (url, headers and body as text)
        self.recording = True
        self.context.on("response", self._keep)
        self.page = self.context.new_page()

    def _keep(self, response) -> None:
        if not self.recording:
            return
        headers = json.dumps(response.headers)
        try:
            body = response.body().decode("utf-8", errors="replace")
        except Exception:  # a redirect has no body to read
            body = ""
        self.seen.append((response.url, headers + "\n" + body))

    def sign_in(self, key: str, next_path: str) -> None:
        page = self.page
        page.goto(f"/signin?next={next_path}")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**{next_path}")

    def naming(self, names: list[str]) -> list[str]:
        """The responses that named a model: `url: name`."""
        return [f"{url}: {name}" for url, text in self.seen for name in names if name in text]

    def close(self) -> None:
        self.context.close()


def wait_until(page, check, seconds: float, what: str):
    for _ in range(int(seconds * 4)):
        value = check()
        if value:
            return value
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def test_two_reviewers_review_blind_and_the_results_name_the_models(browser, server, review_models):
    owner, first, second = (Browser(browser, server, who) for who in ("owner", "first", "second"))
    keys = {who: server.key("team-a") for who in ("owner", "first", "second")}
    names = names_of(review_models)
    try:
        review_id = create_review(owner, keys["owner"], review_models)
        for reviewer, picks in ((first, ["a", "a", "b"]), (second, ["a", "tie", "both_bad"])):
            reviewer.sign_in(keys[reviewer.who], f"/reviews/{review_id}")
            vote_every_item(reviewer, picks)
        first.page.reload()  # the votes are kept: the same choices come back, in the same order
        assert first.page.locator(".review-item input[name=choice]:checked").count() == 3
        assert first.page.locator("#your-votes").inner_text() == "3 of 3"
        screenshot(first, "review")
        refused_before_close(first, review_id)
        served = [url for url, _ in first.seen]
        assert any(url.endswith("/static/js/review.js") for url in served)  # its script was checked too
        assert any(f"/ui/reviews/{review_id}/votes" in url for url in served)  # and the JSON of its votes
        for person in (owner, first, second):
            assert person.naming(names) == [], f"{person.who} was shown a model's name before the close"

        close_review(owner)
        read_results(second, review_id, review_models)
        assert all(
            urlparse(url).netloc == urlparse(server.url).netloc
            for p in (owner, first, second)
            for url, _ in p.seen
        )
    finally:
        for person in (owner, first, second):
            person.close()


def create_review(owner: Browser, key: str, models: list[str]) -> str:
    """The owner's New review form (which lists the models, as a form to pick them must); recording
    of the owner's browser starts with the answer to Create."""
    page = owner.page
    owner.recording = False
    owner.sign_in(key, "/reviews/new")
    page.get_by_role("button", name="Create review").click()
    error = page.locator("#form-error")
    error.wait_for()
    assert "models" in error.inner_text() and "two or more models" in error.inner_text()
    for model in models:
        page.get_by_label(model, exact=True).check()
    page.get_by_label("Prompts", exact=True).fill("\n".join(PROMPTS))
    page.get_by_label("Max tokens per answer").fill(MAX_TOKENS)
    owner.recording = True
    page.get_by_role("button", name="Create review").click()
    page.wait_for_url(re.compile(r".*/reviews/review-[0-9a-f]+$"))
    items = page.locator(".review-item")

    def ready() -> bool:
        status = page.locator("#review-status").inner_text()
        assert status != "failed", page.locator("[role=alert]").first.inner_text()
        return items.count() == len(PROMPTS)

    wait_until(page, ready, 900 if NAMED else 180, "the answers (the page reloads when they are ready)")
    return page.url.rsplit("/", 1)[1]


def vote_every_item(reviewer: Browser, picks: list[str]) -> None:
    page = reviewer.page
    labels = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}
    items = page.locator(".review-item")
    assert items.count() == len(picks)
    for index, pick in enumerate(picks):
        item = items.nth(index)
        assert item.locator(".answer h3").all_inner_texts() == ["A", "B"]
        item.get_by_label(labels[pick]).check()
        if index == 0:
            item.get_by_label("Note (optional)").fill(f"{reviewer.who}: the first reads better")
        item.get_by_role("button", name="Save vote").click()
        wait_until(page, lambda: item.locator(".saved").inner_text() == "Saved", 30, "the vote to be saved")  # noqa: B023
        assert item.get_attribute("data-choice") == pick


def refused_before_close(reviewer: Browser, review_id: str) -> None:
    """Results are a 409 until the owner closes; a reviewer's close (its Close button is not shown) is a 403."""
    page = reviewer.page
    assert page.locator("#close").count() == 0
    answer = page.goto(f"/reviews/{review_id}/results")
    assert answer.status == 409 and "owner closes it" in page.locator("[role=alert]").inner_text()
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: "POST", headers: window.tunery.csrfHeaders()})).status""",
        f"/ui/reviews/{review_id}/close",
    )
    assert status == 403
    page.goto(f"/reviews/{review_id}")


def close_review(owner: Browser) -> None:
    page = owner.page
    page.reload()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Close the review").click()
    page.wait_for_url("**/results")


def read_results(reviewer: Browser, review_id: str, models: list[str]) -> None:
    page = reviewer.page
    page.goto(f"/reviews/{review_id}/results")
    shown = page.locator("#result-models").inner_text()
    assert all(model in shown for model in models)
    assert page.locator("#human-pairs tbody tr").count() == 1
    ranked = page.locator("#human-ranking tbody td:nth-child(2)").all_inner_texts()
    assert sorted(ranked) == sorted(models)
    assert "On 3 items voted by two or more reviewers" in page.locator("#agreement").inner_text()
    screenshot(reviewer, "review-results")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert exported.count("\nhuman,") == 6 and all(model in exported for model in models)


def screenshot(person: Browser, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    person.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if (folder := os.environ.get("TUNERY_SCREENSHOTS")) and name == "review":
        Path(folder).mkdir(parents=True, exist_ok=True)
        person.page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
