"""Refuse a request body over its limit before the server takes it.

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
