"""The dashboard's blind A/B reviews: create one, review its items blind, close it, read the results.

Pages (`/reviews…`) and the scripts' requests (`/ui/reviews…`) call the same domain functions as
`/api/reviews` (`tunery.service.domain.reviews`), with the signed-in key as the reviewer, so one
vote per key and item holds here as in the API. Blindness is the domain's: the review page gets
each answer as "A" or "B" in this reviewer's own order, and no template, script or JSON answer
here holds a model's name before the review is closed; the results page, which does, answers 409
until then. Changes pass the dashboard's origin and CSRF checks (`web.auth.action_project`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from tunery.service.api.deps import SessionDep, SettingsDep
from tunery.service.api.review_tasks import after_reply, start_judging
from tunery.service.domain import datasets, review_results, reviews
from tunery.service.errors import ApiError
from tunery.service.schemas.datasets import DatasetVersionPublic
from tunery.service.schemas.reviews import (
    MAX_PROMPTS,
    JudgeCreate,
    ReviewCreate,
    ReviewPublic,
    VoteCreate,
    VotePublic,
)
from tunery.store.tables import ApiKey
from tunery.web.auth import COOKIE, ActionProject, PageProject, signed_in
from tunery.web.pages import not_found_page, render

pages = APIRouter(include_in_schema=False)
actions = APIRouter(prefix="/ui/reviews", include_in_schema=False)
PAGE_ITEMS = 20  # items a review page shows
CHOICES = [("a", "A is better"), ("b", "B is better"), ("tie", "Tie"), ("both_bad", "Both bad")]


def session_key(request: Request) -> ApiKey:
    """The signed-in key (the page or action dependency has checked the session already)."""
    with request.app.state.sessions() as db:
        found = signed_in(db, request.cookies.get(COOKIE))
    if found is None:
        raise ApiError(401, "not signed in: sign in to the dashboard again", code="not_signed_in")
    return found[1]


def page_key(request: Request, project: PageProject) -> ApiKey:
    return session_key(request)


def action_key(request: Request, project: ActionProject) -> ApiKey:
    return session_key(request)


PageKey = Annotated[ApiKey, Depends(page_key)]
ActionKey = Annotated[ApiKey, Depends(action_key)]


@pages.get("/reviews")
def reviews_page(request: Request, session: SessionDep, key: PageKey) -> HTMLResponse:
    shown = [reviews.public(session, review, key.id) for review in reviews.list_reviews(session, key.project)]
    return render(request, "reviews.html", project=key.project, reviews=shown)


@pages.get("/reviews/new")
def new_review_page(
    request: Request, session: SessionDep, key: PageKey, settings: SettingsDep
) -> HTMLResponse:
    """The owner's form: the models the project may use and its dataset versions."""
    versions = [
        DatasetVersionPublic.of(version)
        for dataset in datasets.list_datasets(session, key.project)
        for version in reversed(datasets.list_versions(session, key.project, dataset.name))
        if version.file_id
    ]
    choices = reviews.available_models(session, key.project, settings)
    return render(
        request,
        "review_new.html",
        project=key.project,
        models=choices,
        versions=versions,
        max_prompts=MAX_PROMPTS,
    )


@pages.get("/reviews/{review_id}")
def review_page(
    request: Request,
    review_id: str,
    session: SessionDep,
    key: PageKey,
    page: Annotated[int | None, Query()] = None,
) -> HTMLResponse:
    """The reviewer's page: PAGE_ITEMS items with answers A and B in this reviewer's order, and their vote;
    without `?page=` the page of their first item without a vote."""
    try:
        review = reviews.public(session, reviews.get_review(session, key.project, review_id), key.id)
        ready = review.status in (reviews.OPEN, reviews.CLOSED)
        items = reviews.reviewer_items(session, key.project, key.id, review_id) if ready else []
    except ApiError as err:
        return not_found_page(request, key.project, err)
    pages_total = max(1, -(-len(items) // PAGE_ITEMS))
    if page is None:
        first_open = next((i for i, item in enumerate(items) if not item.vote), 0)
        page = first_open // PAGE_ITEMS + 1
    page = min(max(page, 1), pages_total)
    shown = items[(page - 1) * PAGE_ITEMS : page * PAGE_ITEMS]
    choices = {item.id: reviews.choice_of(item.vote) for item in shown if item.vote}
    return render(
        request, "review.html", project=key.project, review=review, items=shown, total=len(items),
        page=page, pages=pages_total, first=(page - 1) * PAGE_ITEMS + 1, choices=choices, options=CHOICES,
    )  # fmt: skip


@pages.get("/reviews/{review_id}/results")
def results_page(request: Request, review_id: str, session: SessionDep, key: PageKey) -> HTMLResponse:
    try:
        results = review_results.review_results(session, key.project, review_id, key.id)
    except ApiError as err:
        return render(request, "error.html", status_code=err.status, project=key.project, message=err.message)
    return render(request, "review_results.html", project=key.project, results=results)


@actions.post("", response_model=ReviewPublic)
def create_review(
    body: ReviewCreate, request: Request, background: BackgroundTasks, session: SessionDep, key: ActionKey,
    settings: SettingsDep,
) -> ReviewPublic:  # fmt: skip
    """The New review form: exactly the body of `POST /api/reviews`."""
    review = reviews.create_review(session, key.project, key.id, settings, body)
    shown = reviews.public(session, review, key.id)
    return after_reply(session, shown, background, reviews.generate_answers, request.app.state, review.id)


@actions.get("/{review_id}", response_model=ReviewPublic)
def review_status(review_id: str, session: SessionDep, key: ActionKey) -> ReviewPublic:
    """What the review page polls while answers are generated (no model names)."""
    return reviews.public(session, reviews.get_review(session, key.project, review_id), key.id)


@actions.post("/{review_id}/votes", response_model=VotePublic)
def vote(review_id: str, body: VoteCreate, session: SessionDep, key: ActionKey) -> VotePublic:
    return reviews.vote_public(reviews.cast_vote(session, key.project, key.id, review_id, body))


@actions.post("/{review_id}/close", response_model=ReviewPublic)
def close_review(review_id: str, session: SessionDep, key: ActionKey) -> ReviewPublic:
    return reviews.public(session, reviews.close_review(session, key.project, key.id, review_id), key.id)


@actions.post("/{review_id}/generate", response_model=ReviewPublic)
def generate(
    review_id: str, request: Request, background: BackgroundTasks, session: SessionDep, key: ActionKey
) -> ReviewPublic:
    review = reviews.restart_generation(session, key.project, key.id, review_id, request.app.state)
    shown = reviews.public(session, review, key.id)
    return after_reply(session, shown, background, reviews.generate_answers, request.app.state, review.id)


@actions.post("/{review_id}/judge", response_model=ReviewPublic)
def judge(
    review_id: str, body: JudgeCreate, request: Request, background: BackgroundTasks, session: SessionDep,
    key: ActionKey,
) -> ReviewPublic:  # fmt: skip
    return start_judging(session, key, review_id, body, request, background)


@actions.get("/{review_id}/export")
def export(
    review_id: str,
    session: SessionDep,
    key: ActionKey,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    text, media_type = review_results.export_document(session, key.project, review_id, key.id, format)
    disposition = f'attachment; filename="{review_id}.{format}"'
    return Response(text, media_type=media_type, headers={"Content-Disposition": disposition})
