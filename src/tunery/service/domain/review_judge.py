"""The optional automatic judge of a blind review: any OpenAI-compatible chat endpoint (tunery's own
`/v1` included) picks the better answer of every item, in both orders, stored apart from human votes.

    start_judge(session, project, key_id, review_id, JudgeCreate(base_url=..., model=...), policy)
    await run_judge(app.state.sessions, review_id, body, policy)     # a background task

Each item is asked twice, once with the first model's answer as A and once as B; the two replies
give one verdict (`review_results.combined`): the same winner both ways wins, anything else is a
tie, so a judge that prefers whatever it reads first cancels out, and the share of items where the
orders agree is reported as its consistency. The prompt is `JUDGE_SYSTEM` and `JUDGE_PROMPT`
(docs/review.md). The key is used for this run only: it is never stored or logged. httpx2 (the
HTTP client huggingface_hub installs) speaks to the endpoint; temperature 0, a few tokens.

The endpoint is a URL from a request, so the server's URL policy (tunery/urlpolicy.py) is asked
when the run starts, again just before it calls, and for the address of every connection; no
redirect is followed, the only key sent is the request's own `api_key`, and an error answer is
reported by its status and host only (its body goes to the server's log, not to the caller).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tunery.service.domain.inference import in_thread
from tunery.service.domain.reviews import CLOSED, OPEN, hide_models, owned_review
from tunery.service.errors import ApiError, check_url
from tunery.service.schemas.reviews import JudgeCreate
from tunery.store.tables import Review, ReviewAnswer, ReviewItem, ReviewJudgement
from tunery.urlpolicy import UrlNotAllowed, UrlPolicy, guarded_transport

log = logging.getLogger("tunery.reviews")
CONCURRENCY = 4
REPLY_CHARS = 200
JUDGE_SYSTEM = (
    "You are an impartial judge. You compare two answers to the same prompt and decide which one is "
    "better: more helpful, more correct, clearer. The order of the answers says nothing about their "
    "quality. Reply with one word only: A, B or TIE."
)
JUDGE_PROMPT = (
    "Prompt:\n<<<\n{prompt}\n>>>\n\nAnswer A:\n<<<\n{a}\n>>>\n\nAnswer B:\n<<<\n{b}\n>>>\n\n"
    "Which answer is better? Reply with one word: A, B or TIE."
)
WORD = re.compile(r"\b(A|B|TIE|Tie|tie)\b")


def start_judge(
    session: Session, project: str, key_id: str, review_id: str, body: JudgeCreate, policy: UrlPolicy
) -> Review:
    """The owner starts a judge run (replacing the earlier run's verdicts); one run at a time."""
    review = owned_review(session, project, key_id, review_id, "judge")
    check_url(body.base_url, policy, "base_url")
    if review.status not in (OPEN, CLOSED):
        raise ApiError(
            409, f"the review is {review.status}: the judge needs every answer", code="review_not_open"
        )
    if review.judge and review.judge["status"] == "running":
        raise ApiError(409, "a judge is already running on this review", code="judge_running")
    items = session.scalar(
        select(func.count()).select_from(ReviewItem).where(ReviewItem.review_id == review.id)
    )
    session.execute(delete(ReviewJudgement).where(ReviewJudgement.review_id == review.id))
    review.judge = {
        "model": body.model,
        "status": "running",
        "done": 0,
        "total": 2 * (items or 0),
        "error": None,
    }
    session.commit()
    return review


def judge_messages(prompt: list[dict], a: str, b: str) -> list[dict]:
    asked = "\n\n".join(f"[{turn['role']}] {turn['content']}" for turn in prompt)
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": JUDGE_PROMPT.format(prompt=asked, a=a, b=b)},
    ]


def parse_reply(reply: str) -> str | None:
    """ "a", "b" or "tie" when the reply names exactly one of A, B, TIE (as a word); else None."""
    named = {word.lower() for word in WORD.findall(reply)}
    return named.pop() if len(named) == 1 else None


def verdict_of(choice: str | None, first_as_a: bool) -> str:
    """The judge's choice in the item's terms (first / second / tie), or invalid."""
    if choice is None:
        return "invalid"
    if choice == "tie":
        return "tie"
    return "first" if (choice == "a") == first_as_a else "second"


async def run_judge(
    sessions, review_id: str, body: JudgeCreate, policy: UrlPolicy, transport: Any = None
) -> None:
    """Ask the judge about every item in both orders; its status says how far it got, or why it stopped."""
    import httpx2

    review, questions = await in_thread(_questions, sessions, review_id)
    headers = {"Authorization": f"Bearer {body.api_key}"} if body.api_key else {}
    try:
        await asyncio.to_thread(policy.check, body.base_url, "base_url")  # DNS may have changed since
        async with httpx2.AsyncClient(
            base_url=body.base_url, headers=headers, timeout=120, follow_redirects=False,
            transport=transport or guarded_transport(policy, "base_url"),
        ) as client:  # fmt: skip
            for start in range(0, len(questions), CONCURRENCY):
                chunk = questions[start : start + CONCURRENCY]
                replies = await asyncio.gather(
                    *(ask(client, body.model, messages) for _, _, messages in chunk)
                )
                await in_thread(_store, sessions, review.id, body.model, chunk, replies)
    except (ApiError, UrlNotAllowed, httpx2.HTTPError) as err:
        message = (
            str(err)
            if isinstance(err, ApiError | UrlNotAllowed)
            else f"the judge endpoint at {host_of(body.base_url)} cannot be reached ({type(err).__name__})"
        )
        await in_thread(_judge_status, sessions, review.id, "failed", hide_models(message, review.models))
        return
    await in_thread(_judge_status, sessions, review.id, "succeeded", None)


def host_of(url: str) -> str:
    return urlsplit(url).hostname or "(no host)"


async def ask(client, model: str, messages: list[dict]) -> str:
    """The judge's reply text; an error answer stops the run, naming its status and host only."""
    answer = await client.post(
        "/chat/completions", json={"model": model, "messages": messages, "temperature": 0, "max_tokens": 16}
    )
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code != 200 or not isinstance(body, dict):
        host = answer.request.url.host
        log.warning(
            "the judge endpoint at %s answered HTTP %d: %r", host, answer.status_code, answer.text[:500]
        )
        raise ApiError(
            400, f"the judge endpoint at {host} answered HTTP {answer.status_code} (its answer is in the "
            "server's log)", code="judge_failed",
        )  # fmt: skip
    try:
        return str(body["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        raise ApiError(
            400, "the judge endpoint's answer is not a chat completion", code="judge_failed"
        ) from None


def _questions(sessions, review_id: str) -> tuple[Review, list[tuple[str, bool, list[dict]]]]:
    """(item id, first model shown as A, the judge's messages) for every item and both orders."""
    with sessions() as session:
        review = session.scalar(select(Review).where(Review.id == review_id))
        texts = {
            (a.prompt_index, a.model_index): a.text
            for a in session.scalars(select(ReviewAnswer).where(ReviewAnswer.review_id == review_id))
        }
        questions = []
        for item in session.scalars(
            select(ReviewItem).where(ReviewItem.review_id == review_id).order_by(ReviewItem.seq)
        ):
            first, second = (
                texts[(item.prompt_index, item.first_model)],
                texts[(item.prompt_index, item.second_model)],
            )
            prompt = review.prompts[item.prompt_index]
            questions.append((item.id, True, judge_messages(prompt, first, second)))
            questions.append((item.id, False, judge_messages(prompt, second, first)))
        session.expunge(review)
        return review, questions


def _store(sessions, review_id: str, judge: str, chunk: list, replies: list[str]) -> None:
    with sessions.begin() as session:
        for (item_id, first_as_a, _), reply in zip(chunk, replies, strict=True):
            session.add(
                ReviewJudgement(
                    review_id=review_id, item_id=item_id, judge=judge, first_as_a=first_as_a,
                    verdict=verdict_of(parse_reply(reply), first_as_a), reply=reply[:REPLY_CHARS],
                )
            )  # fmt: skip
        review = session.scalar(select(Review).where(Review.id == review_id))
        review.judge = {**review.judge, "done": review.judge["done"] + len(chunk)}


def _judge_status(sessions, review_id: str, status: str, error: str | None) -> None:
    with sessions.begin() as session:
        review = session.scalar(select(Review).where(Review.id == review_id))
        review.judge = {**review.judge, "status": status, "error": error}
