"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code", ...}}`, so the openai client reads them.

    raise ApiError(409, "file f is used by job j", code="file_in_use")
    raise refusal(err, param="tunery")      # a user error (TuneryError) answered with its own code
    check_url(body.base_url, settings.url_policy, "base_url")   # tunery/urlpolicy.py, as a 400

No FastAPI here: the domain layer raises these; `tunery.service.api.errors.install` answers them.
"""

from __future__ import annotations

from typing import Any

from tunery.errors import TuneryError, error_code
from tunery.urlpolicy import UrlNotAllowed, UrlPolicy

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
}


class ApiError(TuneryError):
    """A refusal with its HTTP status; `code` is the stable OpenAI-style code (None: none to give)."""

    def __init__(
        self, status: int, message: str, code: str | None = None, param: str | None = None, **extra: Any
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.extra = status, message, code, param, extra


def refusal(err: BaseException, status: int = 400, param: str | None = None, **extra: Any) -> ApiError:
    """A user error as the API answers it: the message, and the code the error itself carries."""
    return ApiError(status, str(err), code=error_code(err), param=param, **extra)


def check_url(url: object, policy: UrlPolicy, param: str) -> None:
    """A URL from a request, or a 400 (`url_not_allowed`) naming its field and what to do."""
    try:
        if not isinstance(url, str):
            raise UrlNotAllowed(f"{param}: give the URL as a string (http:// or https://)", param)
        policy.check(url, param)
    except UrlNotAllowed as err:
        raise refusal(err, param=err.param) from None


def not_found(kind: str, id: str) -> ApiError:
    return ApiError(404, f"no {kind} with id '{id}'", code=f"{kind}_not_found")


def error_body(status: int, message: str, code=None, param=None, **extra) -> dict:
    return {
        "error": {
            "message": message,
            "type": TYPES.get(status, "api_error"),
            "param": param,
            "code": code,
            **extra,
        }
    }
