"""Blind A/B reviews: models answer the same prompts; reviewers pick the better of two unnamed answers.

    review = create_review(session, project, key_id, settings, ReviewCreate(models=[...], prompts=[...]))
    await generate_answers(app.state, review.id)        # a background task: every model answers every prompt
    reviewer_items(session, project, key_id, review.id) # the calling reviewer's items, blind
    cast_vote(session, project, key_id, review.id, VoteCreate(item_id=..., choice="a"))
    close_review(session, project, owner_key_id, review.id)
    review_results(session, project, review.id)         # win rates, Bradley–Terry, agreement: names shown

Blindness is kept here, not in the pages: an item is a prompt and a pair of models under a random
id; which answer a reviewer sees as A is an HMAC of the reviewer's key id and the item id under the
review's secret salt (so it is random per reviewer and item, stable across visits, and needs no
table); the order of a reviewer's items is shuffled the same way. Nothing a reviewer can ask for
before the review is closed carries a model's name, its index, or an answer's id: failure messages
say "model 2" instead of the name. After the owner closes it, the results name the models.

Answers come from tunery's own engine (`domain.inference.chat`, the path `/v1/chat/completions`
takes) with greedy decoding and the review's seed, at most `CONCURRENCY` prompts in flight, so the
engine batches them. A server that stopped mid-way generates the missing answers when it starts
again (`resume_generation`), keeping the stored ones; after a failure the owner starts them
again (`POST /api/reviews/{id}/generate`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tunery.service.domain import datasets, models
from tunery.service.domain.inference import in_thread, scrub
from tunery.service.domain.references import CHECKPOINT
from tunery.service.errors import ApiError, not_found
from tunery.service.schemas.reviews import (
    DatasetPrompts,
    JudgeStatus,
    Progress,
    ReviewCreate,
    ReviewItemPublic,
    ReviewPublic,
    ShownAnswer,
    Turn,
    VoteCreate,
    VotePublic,
)
from tunery.settings import Settings
from tunery.store.tables import Review, ReviewAnswer, ReviewItem, ReviewVote, now

log = logging.getLogger("tunery.reviews")
CONCURRENCY = 8
OPEN, CLOSED, GENERATING, FAILED = "open", "closed", "generating", "failed"
# A reviewer's choice -> the item's own terms, by the side the item's first model is shown on
VERDICT_OF = {("a", "a"): "first", ("b", "a"): "second", ("a", "b"): "second", ("b", "b"): "first"}
ChatFn = Callable[[str, list[dict], int, int], Awaitable[tuple[str, str | None]]]


def available_models(session: Session, project: str, settings: Settings) -> list[str]:
    """What the project may review: its fine-tuned models, their base models, the served base models."""
    registry = models.list_models(session, project)
    names = [model.id for model in registry]
    for base in [*(model.base_model for model in registry), *settings.inference_base_models]:
        if base not in names:
            names.append(base)
    return names


def check_models(session: Session, project: str, settings: Settings, wanted: list[str]) -> None:
    usable = set(available_models(session, project, settings))
    for index, name in enumerate(wanted):
        checkpoint = CHECKPOINT.match(name)
        if name not in usable and not (checkpoint and checkpoint["model"] in usable):
            raise ApiError(
                404, f"The model '{name}' does not exist: use a model of GET /v1/models", code="model_not_found",
                param=f"models[{index}]",
            )  # fmt: skip


def create_review(
    session: Session, project: str, key_id: str, settings: Settings, body: ReviewCreate
) -> Review:
    """Store the review, its prompts and its items (every prompt x every pair of models); answers follow."""
    check_models(session, project, settings, body.models)
    if body.prompts is not None:
        prompts = [[{"role": "user", "content": text}] for text in body.prompts]
        source: dict[str, Any] = {"kind": "pasted"}
    else:
        assert body.dataset is not None  # the schema asks for one of the two
        prompts = dataset_prompts(session, project, settings, body.dataset, body.max_prompts)
        source = {"kind": "dataset", "name": body.dataset.name, "version": body.dataset.version}
    review = Review(
        project=project, name=body.name.strip(), owner_key_id=key_id, status=GENERATING, models=body.models,
        prompts=prompts, source=source, max_tokens=body.max_tokens, seed=body.seed, salt=secrets.token_hex(32),
    )  # fmt: skip
    session.add(review)
    session.flush()
    pairs = list(itertools.combinations(range(len(body.models)), 2))
    session.add_all(
        ReviewItem(review_id=review.id, prompt_index=p, first_model=i, second_model=j)
        for p in range(len(prompts))
        for i, j in pairs
    )
    session.commit()
    return review


def dataset_prompts(
    session: Session, project: str, settings: Settings, dataset: DatasetPrompts, limit: int
) -> list[list[dict]]:
    """The first `limit` rows' conversations up to their last assistant turn (a completion row's prompt)."""
    from tunery.data import load_examples

    version = datasets.get_version(session, project, dataset.name, dataset.version)
    stored = datasets.file_of_version(session, project, version)
    loaded = load_examples(settings.artifacts / stored.path)
    prompts = [turns for turns in (prompt_of(example) for example in loaded.examples) if turns][:limit]
    if not prompts:
        raise ApiError(
            400, f"dataset {dataset.name} version {dataset.version} has no prompts (its rows are "
            f"{loaded.format}): use chat or prompt/completion rows, or paste prompts", code="empty_prompt_set",
            param="dataset",
        )  # fmt: skip
    return prompts


def prompt_of(example) -> list[dict] | None:
    if example.kind == "chat":
        turns = list(example.messages)
        last = max((i for i, m in enumerate(turns) if m.role == "assistant"), default=len(turns))
        kept = [{"role": m.role, "content": m.content} for m in turns[:last]]
        return kept if any(turn["role"] == "user" for turn in kept) else None
    if example.kind == "completion" and example.prompt.strip():
        return [{"role": "user", "content": example.prompt}]
    return None


def get_review(session: Session, project: str, review_id: str) -> Review:
    """The project's review; another project's is 404, exactly like a missing one."""
    found = session.scalar(select(Review).where(Review.id == review_id, Review.project == project))
    if found is None:
        raise not_found("review", review_id)
    return found


def list_reviews(session: Session, project: str, limit: int = 100) -> list[Review]:
    query = select(Review).where(Review.project == project).order_by(Review.seq.desc()).limit(limit)
    return list(session.scalars(query))


def owned_review(session: Session, project: str, key_id: str, review_id: str, doing: str) -> Review:
    review = get_review(session, project, review_id)
    if review.owner_key_id != key_id:
        raise ApiError(403, f"only the key that created this review can {doing} it", code="not_review_owner")
    return review


def progress(session: Session, review: Review, key_id: str) -> Progress:
    def count(query) -> int:
        return session.scalar(query) or 0

    votes = select(func.count()).select_from(ReviewVote).where(ReviewVote.review_id == review.id)
    return Progress(
        answers_done=count(select(func.count()).select_from(ReviewAnswer).where(ReviewAnswer.review_id == review.id)),
        answers_total=len(review.models) * len(review.prompts),
        items=count(select(func.count()).select_from(ReviewItem).where(ReviewItem.review_id == review.id)),
        votes=count(votes),
        reviewers=count(
            select(func.count(ReviewVote.reviewer_key_id.distinct())).where(ReviewVote.review_id == review.id)
        ),
        your_votes=count(votes.where(ReviewVote.reviewer_key_id == key_id)),
    )  # fmt: skip


def public(session: Session, review: Review, key_id: str) -> ReviewPublic:
    """The review as any key of the project sees it: models named only once it is closed."""
    judge = review.judge
    return ReviewPublic(
        id=review.id, name=review.name, status=review.status, owner=review.owner_key_id == key_id,
        model_count=len(review.models), prompt_count=len(review.prompts),
        models=list(review.models) if review.status == CLOSED else None,
        max_tokens=review.max_tokens, seed=review.seed, progress=progress(session, review, key_id),
        judge=JudgeStatus(status=judge["status"], done=judge["done"], total=judge["total"], error=judge.get("error"))
        if judge else None,
        error=review.error, created_at=review.created_at, closed_at=review.closed_at,
    )  # fmt: skip


def _hmac(review: Review, text: str) -> bytes:
    return hmac.new(review.salt.encode(), text.encode(), hashlib.sha256).digest()


def first_shown_as(review: Review, key_id: str, item_id: str) -> str:
    """The side ("a" or "b") this reviewer sees the item's first model on: random per reviewer and item."""
    return "a" if _hmac(review, f"side:{key_id}:{item_id}")[0] & 1 else "b"


def choice_of(vote: ReviewVote) -> str:
    """The vote as its reviewer gave it (a, b, tie, both_bad)."""
    if vote.verdict in ("tie", "both_bad"):
        return vote.verdict
    return "a" if (vote.verdict == "first") == (vote.first_shown_as == "a") else "b"


@dataclass(frozen=True)
class ShownItem:
    """An item as one reviewer sees it: no model, no model index, no answer id."""

    id: str
    position: int
    prompt: list[dict]
    answers: tuple[str, str]  # the texts shown as A and as B
    vote: ReviewVote | None


def reviewer_items(session: Session, project: str, key_id: str, review_id: str) -> list[ShownItem]:
    """The calling reviewer's items in their own shuffled order, each with its two answers in their order."""
    review = get_review(session, project, review_id)
    if review.status not in (OPEN, CLOSED):
        raise ApiError(
            409, f"the review is {review.status}: its items open once every answer is ready",
            code="review_not_open",
        )  # fmt: skip
    items = session.scalars(select(ReviewItem).where(ReviewItem.review_id == review.id)).all()
    texts = {
        (answer.prompt_index, answer.model_index): answer.text
        for answer in session.scalars(select(ReviewAnswer).where(ReviewAnswer.review_id == review.id))
    }
    mine = select(ReviewVote).where(ReviewVote.review_id == review.id, ReviewVote.reviewer_key_id == key_id)
    votes = {vote.item_id: vote for vote in session.scalars(mine)}
    ordered = sorted(items, key=lambda item: _hmac(review, f"order:{key_id}:{item.id}"))
    shown = []
    for position, item in enumerate(ordered, start=1):
        first = texts[(item.prompt_index, item.first_model)]
        second = texts[(item.prompt_index, item.second_model)]
        pair = (first, second) if first_shown_as(review, key_id, item.id) == "a" else (second, first)
        shown.append(
            ShownItem(item.id, position, review.prompts[item.prompt_index], pair, votes.get(item.id))
        )
    return shown


def item_public(shown: ShownItem) -> ReviewItemPublic:
    return ReviewItemPublic(
        id=shown.id, position=shown.position, prompt=[Turn(**turn) for turn in shown.prompt],
        answers=[ShownAnswer(slot="a", text=shown.answers[0]), ShownAnswer(slot="b", text=shown.answers[1])],
        vote=vote_public(shown.vote) if shown.vote else None,
    )  # fmt: skip


def vote_public(vote: ReviewVote) -> VotePublic:
    return VotePublic(
        item_id=vote.item_id, choice=choice_of(vote), note=vote.note, updated_at=vote.updated_at
    )


def cast_vote(session: Session, project: str, key_id: str, review_id: str, body: VoteCreate) -> ReviewVote:
    """The reviewer's vote on an item, stored in the item's terms; voting again changes it (until close)."""
    review = get_review(session, project, review_id)
    item = session.scalar(
        select(ReviewItem).where(ReviewItem.id == body.item_id, ReviewItem.review_id == review.id)
    )
    if item is None:
        raise ApiError(
            404, f"no review item with id '{body.item_id}'", code="review_item_not_found", param="item_id"
        )
    if review.status != OPEN:
        raise ApiError(
            409, f"the review is {review.status}: votes are taken while it is open", code="review_not_open"
        )
    side = first_shown_as(review, key_id, item.id)
    verdict = body.choice if body.choice in ("tie", "both_bad") else VERDICT_OF[(body.choice, side)]
    note = (body.note or "").strip() or None
    mine = select(ReviewVote).where(ReviewVote.item_id == item.id, ReviewVote.reviewer_key_id == key_id)
    for _attempt in range(2):  # a second request of the same reviewer may insert first: then update it
        vote = session.scalar(mine)
        if vote is None:
            vote = ReviewVote(
                review_id=review.id, item_id=item.id, reviewer_key_id=key_id, first_shown_as=side
            )
            session.add(vote)
        vote.verdict, vote.note, vote.updated_at = verdict, note, now()
        try:
            session.commit()
            return vote
        except IntegrityError:
            session.rollback()
    raise ApiError(409, "the vote changed while it was stored: send it again", code="vote_conflict")


def close_review(session: Session, project: str, key_id: str, review_id: str) -> Review:
    """The owner ends the voting; from now on the results (with the models' names) can be read."""
    review = owned_review(session, project, key_id, review_id, "close")
    if review.status == CLOSED:
        return review
    if review.status != OPEN:
        raise ApiError(
            409, f"the review is {review.status}: only an open review can be closed", code="review_not_open"
        )
    review.status, review.closed_at = CLOSED, now()
    session.commit()
    return review


def restart_generation(session: Session, project: str, key_id: str, review_id: str, state: Any) -> Review:
    """The owner starts the missing answers again (after a restart or a failure); stored ones are kept."""
    review = owned_review(session, project, key_id, review_id, "generate answers for")
    if review.status not in (GENERATING, FAILED) or review.id in running_reviews(state):
        raise ApiError(
            409, f"the review is {review.status}" + (" and its answers are being generated" if
            review.status == GENERATING else ": its answers are complete"), code="review_not_restartable",
        )  # fmt: skip
    review.status, review.error = GENERATING, None
    session.commit()
    return review


def resume_generation(state: Any) -> list[asyncio.Task]:
    """At start-up: the reviews a stopped server left "generating" get their missing answers."""
    with state.sessions() as session:
        waiting = list(session.scalars(select(Review.id).where(Review.status == GENERATING)))
    if waiting:
        log.info("resuming the answers of %d review(s) left generating", len(waiting))
    return [asyncio.create_task(generate_answers(state, review_id)) for review_id in waiting]


def running_reviews(state: Any) -> set[str]:
    if getattr(state, "reviews_generating", None) is None:
        state.reviews_generating = set()
    return state.reviews_generating


def hide_models(message: str, names: list[str]) -> str:
    """A message a reviewer may read, with each model's name replaced by its number."""
    for index, name in sorted(enumerate(names), key=lambda pair: -len(pair[1])):
        message = message.replace(name, f"model {index + 1}")
    return scrub(message)


def engine_chat(state: Any, project: str) -> ChatFn:
    """One greedy answer of tunery's engine, as `/v1/chat/completions` gives it; waits out a 429."""
    from tunery.service.domain import inference
    from tunery.service.schemas.inference import ChatRequest

    async def answer(model: str, messages: list[dict], max_tokens: int, seed: int) -> tuple[str, str | None]:
        body = ChatRequest(model=model, messages=messages, temperature=0.0, max_tokens=max_tokens, seed=seed)
        while True:
            try:
                reply = await inference.chat(state, project, body)
            except inference.Busy as busy:
                await asyncio.sleep(busy.retry_after)
                continue
            assert isinstance(reply, dict)  # not streamed
            choice = reply["choices"][0]
            return choice["message"]["content"] or "", choice["finish_reason"]

    return answer


async def generate_answers(state: Any, review_id: str, chat: ChatFn | None = None) -> None:
    """Every model's answer to every prompt not answered yet, then the review opens (or fails, saying why)."""
    running = running_reviews(state)
    if review_id in running:
        return
    running.add(review_id)
    try:
        review = await in_thread(_load, state.sessions, review_id)
        await _answer_all(state, review, chat or engine_chat(state, review.project))
    except Exception:  # the database itself failed: nothing to record it in
        log.exception("review %s: generating answers failed", review_id)
    finally:
        running.discard(review_id)


async def _answer_all(state: Any, review: Review, chat: ChatFn) -> None:
    sessions = state.sessions
    done = await in_thread(_answered, sessions, review.id)
    try:
        for model_index, model in enumerate(review.models):
            todo = [p for p in range(len(review.prompts)) if (p, model_index) not in done]
            # the first prompt alone: it loads the model (once), then the rest go CONCURRENCY at a time
            for chunk in [todo[:1]] + [todo[i : i + CONCURRENCY] for i in range(1, len(todo), CONCURRENCY)]:
                replies = await asyncio.gather(
                    *(chat(model, review.prompts[p], review.max_tokens, review.seed) for p in chunk)
                )
                await in_thread(_store_answers, sessions, review.id, model_index, chunk, replies)
    except ApiError as err:
        await in_thread(
            _finish,
            sessions,
            review.id,
            FAILED,
            {"code": err.code, "message": hide_models(err.message, review.models)},
        )
        return
    except Exception as err:  # a bug or a crash: the log has it, the owner gets a request id
        request_id = secrets.token_hex(8)
        log.exception("review %s: generating answers failed (request id %s)", review.id, request_id)
        message = f"generating the answers failed (request id {request_id}): {type(err).__name__}"
        await in_thread(
            _finish, sessions, review.id, FAILED, {"code": "generation_failed", "message": message}
        )
        return
    await in_thread(_finish, sessions, review.id, OPEN, None)


def _load(sessions, review_id: str) -> Review:
    with sessions() as session:
        review = session.scalar(select(Review).where(Review.id == review_id))
        session.expunge(review)
        return review


def _answered(sessions, review_id: str) -> set[tuple[int, int]]:
    with sessions() as session:
        rows = session.execute(
            select(ReviewAnswer.prompt_index, ReviewAnswer.model_index).where(
                ReviewAnswer.review_id == review_id
            )
        )
        return {(p, m) for p, m in rows}


def _store_answers(sessions, review_id: str, model_index: int, prompts: list[int], replies: list) -> None:
    with sessions.begin() as session:
        session.add_all(
            ReviewAnswer(
                review_id=review_id, prompt_index=p, model_index=model_index, text=text, finish_reason=finish
            )
            for p, (text, finish) in zip(prompts, replies, strict=True)
        )


def _finish(sessions, review_id: str, status: str, error: dict | None) -> None:
    with sessions.begin() as session:
        review = session.scalar(select(Review).where(Review.id == review_id))
        if review is not None and review.status == GENERATING:
            review.status, review.error = status, error
