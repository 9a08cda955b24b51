"""`/v1/chat/completions` and `/v1/completions`: base models and fine-tuned models, OpenAI-shaped.

The answering is `tunery.service.domain.inference` (shared with the dashboard's playground);
the engine (`tunery.serve.engine`, torch) is imported and started there on first use. Here: who
calls (project and key, for admission), how to tell they have gone (`request.is_disconnected`),
and the 429 with its `Retry-After` header when their rows in flight are at the limit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from tunery.service import keys
from tunery.service.api.deps import BearerKey
from tunery.service.api.streaming import as_response
from tunery.service.domain import inference
from tunery.service.errors import ApiError, error_body
from tunery.service.schemas.inference import ChatCompletion, ChatRequest, CompletionRequest, TextCompletion

router = APIRouter(tags=["inference"])


async def calling_key(request: Request, credentials: BearerKey) -> tuple[str | None, str | None]:
    """(project, key id) of the Bearer key; (None, None) standalone (no database, no keys).

    A key at its limit of rows in flight is refused (429) before the look-up: a flood of retries
    costs a hash each, not a thread and a query that everyone else's requests queue behind. The
    key is checked in a short read-only session of its own: a streamed answer must not hold a
    transaction, and the checks of many requests must not queue for SQLite's write lock."""
    state = request.app.state
    if getattr(state, "sessions", None) is None:
        return None, None
    if credentials is None:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    digest = keys.hash_key(credentials.credentials)
    admission = inference.admission_of(state)
    admission.refuse_full(digest)
    gate = admission.gate(f"digest:{digest}")  # a key's look-ups hold at most its gate's threads
    project, key = await inference.in_thread(look_up, state, credentials.credentials, gate=gate)
    admission.remember(digest, key)
    return project, key


def look_up(state, secret: str) -> tuple[str, str]:
    with inference.read_sessions(state)() as session:
        key = keys.live_key(session, secret=secret)
        if key is None:
            raise ApiError(401, "invalid API key", code="invalid_api_key")
        return key.project, key.id


KeyDep = Annotated[tuple[str | None, str | None], Depends(calling_key)]


def busy(err: inference.Busy) -> JSONResponse:
    body = error_body(429, err.message, err.code)
    return JSONResponse(body, status_code=429, headers={"Retry-After": str(err.retry_after)})


@router.post("/v1/chat/completions", responses={200: {"model": ChatCompletion}})
async def chat_completions(body: ChatRequest, request: Request, caller: KeyDep):
    project, key = caller
    try:
        answer = await inference.chat(request.app.state, project, body, key, request.is_disconnected)
    except inference.Busy as err:
        return busy(err)
    return as_response(answer)


@router.post("/v1/completions", responses={200: {"model": TextCompletion}})
async def completions(body: CompletionRequest, request: Request, caller: KeyDep):
    project, key = caller
    try:
        answer = await inference.complete(request.app.state, project, body, key, request.is_disconnected)
    except inference.Busy as err:
        return busy(err)
    return as_response(answer)
