"""Refusals before a request's body is parsed: an upload over `max_upload_bytes` (`UploadLimit`),
and an inference request whose key is at its limit of answers in flight (`InferenceGate`).

An upload first: refuse it over `max_upload_bytes` before the disk takes it.

Starlette spools a multipart body to disk before a route runs, so the upload route's own
size check (which stops copying at the limit) would come after the disk had taken it all.
A body that declares its size (Content-Length) is refused before any of it is read; a
chunked body is counted as it arrives and refused at the first chunk over the limit, and
whatever the route would have answered to the cut-off body is replaced by the 413.
"""

from __future__ import annotations

import contextlib

from starlette.responses import JSONResponse

from tunery.service import keys
from tunery.service.domain.inference import Busy, admission_of
from tunery.service.errors import error_body

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the `purpose` field around the file


class _OverLimit(Exception):
    pass


class UploadLimit:
    def __init__(self, app, max_bytes: int, path: str = "/v1/files"):
        self.app, self.max_bytes, self.path = app, max_bytes, path

    async def __call__(self, scope, receive, send):
        if not (
            scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/") == self.path
        ):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes + MULTIPART_OVERHEAD
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send)
            return
        seen, over = 0, False

        async def counted():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _OverLimit
            return message

        async def unless_over(message):
            if not over:
                await send(message)

        with contextlib.suppress(_OverLimit):  # or the app turned it into its own answer, dropped above
            await self.app(scope, counted, unless_over)
        if over:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send) -> None:
        message = f"the upload is over the limit of {self.max_bytes} bytes"
        refusal = error_body(413, message, code="file_too_large", param="file")
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
