"""`/v1/chat/completions` and `/v1/completions`: base models and fine-tuned models, OpenAI-shaped.

The answering is `tunery.service.domain.inference` (shared with the dashboard's playground);
the engine (`tunery.serve.engine`, torch) is imported and started there on first use.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from tunery.service.api.deps import Caller
from tunery.service.api.streaming import as_response
from tunery.service.domain import inference
from tunery.service.schemas.inference import ChatRequest, CompletionRequest

router = APIRouter(tags=["inference"])


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request, project: Caller):
    return as_response(await inference.chat(request.app.state, project, body))


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request, project: Caller):
    return as_response(await inference.complete(request.app.state, project, body))
