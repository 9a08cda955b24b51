"""The one base of the errors a user can act on, each with a stable `code`.

The code is what the REST API returns in `error.code` (OpenAI's shape), what a failed job records,
and what the CLI prints before the message; nothing matches an error by its class name.

    try:
        tunery.train("bad.yaml")
    except TuneryError as err:
        err.code, str(err)  # ("invalid_config", "unknown key 'train.learning_rate'; did you mean 'train.lr'?")
"""

from __future__ import annotations


class TuneryError(Exception):
    """Something the user gave us is wrong or can't run here; the message says what to do."""

    # None only for a `tunery.service.errors.ApiError` that answers with no code (OpenAI's `"code": null`).
    code: str | None = "invalid_request"


def error_code(err: BaseException) -> str | None:
    """The stable code of a user-facing error; None for an internal one (a bug, a crash)."""
    if isinstance(err, TuneryError):
        return err.code
    if isinstance(err, FileNotFoundError | FileExistsError):
        return "file_not_found" if isinstance(err, FileNotFoundError) else "file_exists"
    return None
