"""The app's exception handlers: every refusal leaves in OpenAI's error shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunery.errors import TuneryError
from tunery.service.errors import ApiError, error_body, refusal


def _answer(err: ApiError) -> JSONResponse:
    body = error_body(err.status, err.message, err.code, err.param, **err.extra)
    return JSONResponse(body, status_code=err.status, headers=getattr(err, "headers", None))  # Retry-After


UNREADABLE_UPLOAD = ApiError(
    400, "the upload could not be read as multipart form data: a part header is malformed or too long "
    "(file names take at most 255 characters); rename the file and send it again",
    code="invalid_multipart", param="file",
)  # fmt: skip


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, err: ApiError) -> JSONResponse:
        return _answer(err)

    @app.exception_handler(TuneryError)
    async def _user_error(_request: Request, err: TuneryError) -> JSONResponse:
        """A user error no route turned into a refusal: a 400 with its own code, never a 500."""
        return _answer(refusal(err))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 400 and str(err.detail).startswith("Invalid multipart"):
            return _answer(UNREADABLE_UPLOAD)  # the parser's words name neither the part nor the fix
        return JSONResponse(error_body(err.status_code, str(err.detail)), status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        errors = readable(err.errors())
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        param = next((invalid_param(e) for e in errors), None)
        return _answer(ApiError(400, f"invalid request: {problems}", code="invalid_request", param=param))


UNION_MEMBER = ("literal[", "constrained-", "function-")


def readable(errors: Sequence[Any]) -> list[dict]:
    """One error per field of a union (`"auto"` or a bounded number): the bound, not "should be 'auto'"."""

    def member(part) -> bool:
        return isinstance(part, str) and (part.startswith(UNION_MEMBER) or part in ("int", "float", "str"))

    kept = [e for e in errors if not any(str(p).startswith("literal[") for p in e["loc"])] or list(errors)
    shown, seen = [], set()
    for error in kept:
        loc = tuple(p for p in error["loc"] if not member(p))
        if loc not in seen:
            seen.add(loc)
            shown.append({**error, "loc": loc})
    return shown


def invalid_param(error: dict) -> str | None:
    """OpenAI's `param` for a validation error: `messages[0].content`; a check that names its own
    field (an exception with `param`, kept by pydantic in `ctx`) extends the location with it."""
    parts = [p for p in error["loc"] if p != "body" and not str(p).startswith(("function-", "list[", "str"))]
    named = getattr((error.get("ctx") or {}).get("error"), "param", None) or (error.get("ctx") or {}).get(
        "key"
    )
    if named and parts and str(parts[-1]) == named:
        named = None  # a field validator's location names the field already
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in [*parts, *([named] if named else [])])
    return text.lstrip(".") or None
