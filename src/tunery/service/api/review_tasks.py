"""Review work that runs after the answer is sent, for the API's routes and the dashboard's actions alike."""

from __future__ import annotations

from fastapi import BackgroundTasks, Request
from sqlalchemy.orm import Session

from tunery.service.domain import review_judge, reviews
from tunery.service.schemas.reviews import JudgeCreate, ReviewPublic
from tunery.store.tables import ApiKey


def after_reply(
    session: Session, answer: ReviewPublic, background: BackgroundTasks, task, *args
) -> ReviewPublic:
    """Run `task(*args)` once the answer is sent; this request's transaction ends first (on SQLite it
    holds the write lock, and the request's session is closed only after its background tasks)."""
    session.commit()
    background.add_task(task, *args)
    return answer


def start_judging(
    session: Session,
    key: ApiKey,
    review_id: str,
    body: JudgeCreate,
    request: Request,
    background: BackgroundTasks,
) -> ReviewPublic:
    """The owner's review, its judge started: every URL it calls goes through the server's policy."""
    policy = request.app.state.settings.url_policy
    review = review_judge.start_judge(session, key.project, key.id, review_id, body, policy)
    shown = reviews.public(session, review, key.id)
    return after_reply(
        session,
        shown,
        background,
        review_judge.run_judge,
        request.app.state.sessions,
        review.id,
        body,
        policy,
    )
