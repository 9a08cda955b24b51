"""Refusals before a request's body is parsed: a body over its limit (`BodyLimit`), and an inference
request whose key is at its limit of answers in flight (`InferenceGate`).

An upload (`POST /v1/files`, the dashboard's `/ui/files`) may hold `max_upload_bytes`; any other
body (JSON, forms) `max_request_bytes`. A body that declares its size (Content-Length) over the
limit is refused before any of it is read; a chunked body is counted as it arrives and refused at
the first chunk over the limit, and whatever the route would have answered to the cut-off body is
replaced by the 413. The upload routes check who sends the body before reading it (their
dependencies read only headers), so together nobody unknown gets a byte onto the disk.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from starlette.responses import JSONResponse

from tunery.service import keys
from tunery.service.domain.inference import Busy, admission_of
from tunery.service.errors import error_body
from tunery.service.integers import INT64_MAX, bounded_int

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the `purpose` field around the file
UPLOAD_PATHS = ("/v1/files", "/ui/files")


class _OverLimit(Exception):
    pass


@dataclass(frozen=True)
class Limit:
    most: int  # bytes the body may hold, overhead included
    message: str
    code: str
    param: str | None


class BodyLimit:
    def __init__(self, app, max_upload_bytes: int, max_request_bytes: int):
        self.app = app
        self.upload = Limit(
            max_upload_bytes + MULTIPART_OVERHEAD,
            f"the upload is over the limit of {max_upload_bytes} bytes", "file_too_large", "file",
        )  # fmt: skip
        self.request = Limit(
            max_request_bytes, f"the request body is over the limit of {max_request_bytes} bytes",
            "request_too_large", None,
        )  # fmt: skip

    def limit_for(self, scope) -> Limit:
        is_upload = scope["method"] == "POST" and scope["path"].rstrip("/") in UPLOAD_PATHS
        return self.upload if is_upload else self.request

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (bounded_int(declared, most=INT64_MAX) or 0) > limit.most:
            await self._refuse(limit, scope, receive, send)
            return
        seen, over = 0, False

        async def counted():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit.most:
                    over = True
                    raise _OverLimit
            return message

        async def unless_over(message):
            if not over:
                await send(message)

        with contextlib.suppress(_OverLimit):  # or the app turned it into its own answer, dropped above
            await self.app(scope, counted, unless_over)
        if over:
            await self._refuse(limit, scope, receive, send)

    @staticmethod
    async def _refuse(limit: Limit, scope, receive, send) -> None:
        refusal = error_body(413, limit.message, code=limit.code, param=limit.param)
        await JSONResponse(refusal, status_code=413, headers={"Connection": "close"})(scope, receive, send)


INFERENCE_PATHS = ("/v1/chat/completions", "/v1/completions")


class InferenceGate:
    """A key at its limit of answers in flight is told 429 with Retry-After as soon as its
    request's headers are in: no body parsed, no route, no thread, no database. A flood that
    retries every refusal costs a hash and a short answer each, so the event loop stays free for
    other keys' requests (the route's own check stays, for keys not yet seen and for standalone)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].rstrip("/") in INFERENCE_PATHS
        ):
            secret = bearer(scope)
            state = scope["app"].state
            if secret and getattr(state, "sessions", None) is not None:
                try:
                    admission_of(state).refuse_full(keys.hash_key(secret))
                except Busy as err:
                    await drain(receive)  # the connection stays usable for the client's retry
                    body = error_body(429, err.message, code=err.code)
                    await JSONResponse(body, status_code=429, headers=err.headers)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def bearer(scope) -> str | None:
    scheme, _, secret = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1").partition(" ")
    return secret.strip() or None if scheme.lower() == "bearer" else None


async def drain(receive) -> None:
    while (message := await receive())["type"] == "http.request" and message.get("more_body", False):
        pass
