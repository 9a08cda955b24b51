"""Refuse an upload over `max_upload_bytes` from its Content-Length, before any of it is read.

Starlette spools a multipart body to disk before a route runs, so the upload route's own
size check (which stops copying at the limit) would come after the disk had taken it all.
A body without Content-Length (chunked) still meets that check.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from tunery.service.errors import _body

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and the `purpose` field around the file


class UploadLimit:
    def __init__(self, app, max_bytes: int, path: str = "/v1/files"):
        self.app, self.max_bytes, self.path = app, max_bytes, path

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/") == self.path:
            declared = dict(scope["headers"]).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_bytes + MULTIPART_OVERHEAD:
                message = f"the upload is over the limit of {self.max_bytes} bytes"
                refusal = _body(413, message, code="file_too_large", param="file")
                await JSONResponse(refusal, status_code=413, headers={"Connection": "close"})(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)
