"""The app's exception handlers: every refusal leaves in OpenAI's error shape."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunery.errors import TuneryError
from tunery.service.errors import ApiError, error_body, refusal


def _answer(err: ApiError) -> JSONResponse:
    body = error_body(err.status, err.message, err.code, err.param, **err.extra)
    return JSONResponse(body, status_code=err.status)


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
        return JSONResponse(error_body(err.status_code, str(err.detail)), status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return _answer(ApiError(400, f"invalid request: {problems}", code="invalid_request"))
