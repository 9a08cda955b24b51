"""Refuse an upload over `max_upload_bytes` before the disk takes it.

Starlette spools a multipart body to disk before a route runs, so the upload route's own
size check (which stops copying at the limit) would come after the disk had taken it all.
A body that declares its size (Content-Length) is refused before any of it is read; a
chunked body is counted as it arrives and refused at the first chunk over the limit, and
whatever the route would have answered to the cut-off body is replaced by the 413.
"""

from __future__ import annotations

import contextlib

from starlette.responses import JSONResponse

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
