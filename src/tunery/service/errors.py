"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code", ...}}`, so the openai client reads them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
}


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, code: str | None = None, param: str | None = None, **extra: Any
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.extra = status, message, code, param, extra


def not_found(kind: str, id: str) -> ApiError:
    return ApiError(404, f"no {kind} with id '{id}'", code=f"{kind}_not_found")


def _body(status: int, message: str, code=None, param=None, **extra) -> dict:
    return {
        "error": {
            "message": message,
            "type": TYPES.get(status, "api_error"),
            "param": param,
            "code": code,
            **extra,
        }
    }


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(
            _body(err.status, err.message, err.code, err.param, **err.extra), status_code=err.status
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body(err.status_code, str(err.detail)), status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return JSONResponse(
            _body(400, f"invalid request: {problems}", code="invalid_request"), status_code=400
        )
