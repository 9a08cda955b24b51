"""`/api/reviews`: blind A/B reviews. Create one (models answer in the background), list the calling
reviewer's items (blind), vote, close (the owner), then read the results and export them.

The calling key is the reviewer: its id keeps one vote per item and decides the (random) side each
model's answer is shown on. Nothing here names a model before the review is closed.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import Response

from tunery.service import keys
from tunery.service.api.deps import BearerKey, SessionDep, SettingsDep
from tunery.service.api.review_tasks import after_reply, start_judging
from tunery.service.domain import review_results, reviews
from tunery.service.errors import ApiError
from tunery.service.schemas.common import ListPage
from tunery.service.schemas.reviews import (
    JudgeCreate,
    ReviewCreate,
    ReviewItemPublic,
    ReviewPublic,
    ReviewResults,
    VoteCreate,
    VotePublic,
)
from tunery.store.tables import ApiKey

router = APIRouter(prefix="/api/reviews", tags=["reviews"])


def calling_key(session: SessionDep, credentials: BearerKey) -> ApiKey:
    """The Bearer key's row (`keys.live_key` decides): its project, and its id as the reviewer."""
    if credentials is None:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    key = keys.live_key(session, secret=credentials.credentials)
    if key is None:
        raise ApiError(401, "invalid API key", code="invalid_api_key")
    return key


CallingKey = Annotated[ApiKey, Depends(calling_key)]


@router.get("", response_model=ListPage[ReviewPublic])
def list_reviews(session: SessionDep, key: CallingKey) -> ListPage[ReviewPublic]:
    found = reviews.list_reviews(session, key.project)
    return ListPage.of([reviews.public(session, review, key.id) for review in found])


@router.post("", response_model=ReviewPublic)
def create_review(
    body: ReviewCreate,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    key: CallingKey,
    settings: SettingsDep,
) -> ReviewPublic:
    """Store the review; every model answers every prompt in the background, then it opens."""
    review = reviews.create_review(session, key.project, key.id, settings, body)
    return after_reply(
        session,
        reviews.public(session, review, key.id),
        background,
        reviews.generate_answers,
        request.app.state,
        review.id,
    )


@router.get("/{review_id}", response_model=ReviewPublic)
def get_review(review_id: str, session: SessionDep, key: CallingKey) -> ReviewPublic:
    return reviews.public(session, reviews.get_review(session, key.project, review_id), key.id)


@router.get("/{review_id}/items", response_model=ListPage[ReviewItemPublic])
def list_items(review_id: str, session: SessionDep, key: CallingKey) -> ListPage[ReviewItemPublic]:
    """The calling reviewer's items, in their own order: the prompt and answers `a` and `b`, no model."""
    shown = reviews.reviewer_items(session, key.project, key.id, review_id)
    return ListPage.of([reviews.item_public(item) for item in shown])


@router.post("/{review_id}/votes", response_model=VotePublic)
def vote(review_id: str, body: VoteCreate, session: SessionDep, key: CallingKey) -> VotePublic:
    """One vote per reviewer and item: a, b, tie or both_bad, and a note; sending again changes it."""
    return reviews.vote_public(reviews.cast_vote(session, key.project, key.id, review_id, body))


@router.post("/{review_id}/close", response_model=ReviewPublic)
def close_review(review_id: str, session: SessionDep, key: CallingKey) -> ReviewPublic:
    """The owner (the key that created it) ends the voting; the results then name the models."""
    return reviews.public(session, reviews.close_review(session, key.project, key.id, review_id), key.id)


@router.post("/{review_id}/generate", response_model=ReviewPublic, status_code=202)
def generate(
    review_id: str, request: Request, background: BackgroundTasks, session: SessionDep, key: CallingKey
) -> ReviewPublic:
    """The owner starts the missing answers again (after a failure or a restart)."""
    review = reviews.restart_generation(session, key.project, key.id, review_id, request.app.state)
    return after_reply(
        session,
        reviews.public(session, review, key.id),
        background,
        reviews.generate_answers,
        request.app.state,
        review.id,
    )


@router.post("/{review_id}/judge", response_model=ReviewPublic, status_code=202)
def judge(
    review_id: str, body: JudgeCreate, request: Request, background: BackgroundTasks, session: SessionDep,
    key: CallingKey,
) -> ReviewPublic:  # fmt: skip
    """The owner has an OpenAI-compatible chat endpoint judge every item in both orders."""
    return start_judging(session, key, review_id, body, request, background)


@router.get("/{review_id}/results", response_model=ReviewResults)
def results(review_id: str, session: SessionDep, key: CallingKey) -> ReviewResults:
    """Once closed: win rates per pair (95% Wilson), the Bradley–Terry ranking, agreement; the judge apart."""
    return review_results.review_results(session, key.project, review_id, key.id)


EXPORT = {
    "description": "Every vote and judge verdict, as JSON (`format=json`) or CSV (`format=csv`)",
    "content": {
        "application/json": {"schema": {"type": "object"}},
        "text/csv": {"schema": {"type": "string"}},
    },
}


@router.get("/{review_id}/export", responses={200: EXPORT})
def export(
    review_id: str,
    session: SessionDep,
    key: CallingKey,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    """Every vote and judge verdict with the models' names (once closed), as JSON or CSV."""
    text, media_type = review_results.export_document(session, key.project, review_id, key.id, format)
    filename = f"{review_id}.{format}"
    return Response(
        text, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
