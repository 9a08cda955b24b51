"""A completion as an HTTP answer: JSON, or server-sent events when the request asked to stream."""

from __future__ import annotations

from fastapi.responses import StreamingResponse

from tunery.service.domain.inference import Answer


def as_response(answer: Answer) -> dict | StreamingResponse:
    if isinstance(answer, dict):
        return answer
    return StreamingResponse(answer, media_type="text/event-stream")
