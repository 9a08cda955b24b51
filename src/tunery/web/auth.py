"""Signing in to the dashboard: an API key once, then a signed session cookie that holds no key.

    cookie = session_cookie(secret, key_id="key-…")       # "key-….1767225600.9f2c…"
    key_id_of(secret, cookie)                              # "key-…", or None when forged or expired

The cookie names the key's row (its id, not the key) with an expiry, signed with HMAC-SHA256
and a secret kept in the data directory, so sessions survive a restart and a revoked key
ends its sessions at once. It is HttpOnly and SameSite=Strict: scripts cannot read it and
other sites cannot send it. The standard library's `hmac` is all this needs, so no
session library is added.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from tunery.service import keys
from tunery.service.errors import ApiError
from tunery.store.tables import ApiKey

COOKIE = "tunery_session"
LIFETIME_SECONDS = 7 * 24 * 3600


class SignInRequired(Exception):
    """A page was asked for without a valid session; the dashboard answers with the sign-in page."""

    def __init__(self, next_path: str):
        self.next_path = next_path


def load_secret(data_dir: Path) -> bytes:
    """The signing secret, made on first use (readable by the server's user only)."""
    path = Path(data_dir) / "web-session-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def _signature(secret: bytes, payload: str) -> str:
    return hmac.new(secret, payload.encode("utf-8"), hashlib.sha256).hexdigest()


def session_cookie(secret: bytes, key_id: str, now: float | None = None) -> str:
    payload = f"{key_id}.{int((now or time.time()) + LIFETIME_SECONDS)}"
    return f"{payload}.{_signature(secret, payload)}"


def key_id_of(secret: bytes, cookie: str | None, now: float | None = None) -> str | None:
    if not cookie or cookie.count(".") != 2:
        return None
    key_id, expires, signature = cookie.split(".")
    if not hmac.compare_digest(signature, _signature(secret, f"{key_id}.{expires}")):
        return None
    if not expires.isdigit() or int(expires) < (now or time.time()):
        return None
    return key_id


def key_of_sign_in(session, typed: str) -> ApiKey | None:
    """The live key row of an API key as typed on the sign-in page (`keys.live_key` decides)."""
    return keys.live_key(session, secret=typed.strip()) if typed.strip() else None


def secret_of(request: Request) -> bytes:
    app_state = request.app.state
    if getattr(app_state, "web_secret", None) is None:
        app_state.web_secret = load_secret(app_state.settings.data_dir)
    return app_state.web_secret


def project_of_session(request: Request) -> str | None:
    """The project of the request's session cookie, looked up in a short session of its own: a
    streamed answer (live events, chat) must not hold a database transaction while it streams."""
    key_id = key_id_of(secret_of(request), request.cookies.get(COOKIE))
    if key_id is None:
        return None
    with request.app.state.sessions() as session:
        key = keys.live_key(session, key_id=key_id)  # a revoked key ends its sessions at once
        return key.project if key else None


def page_project(request: Request) -> str:
    """For pages: the signed-in project, or a redirect to the sign-in page."""
    project = project_of_session(request)
    if project is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return project


def action_project(request: Request) -> str:
    """For the dashboard's own requests (fetch, EventSource): the project, or 401 in the API's shape."""
    project = project_of_session(request)
    if project is None:
        raise ApiError(401, "not signed in: sign in to the dashboard again", code="not_signed_in")
    return project


def sign_in_url(next_path: str) -> str:
    return "/signin?next=" + quote(next_path, safe="/")


def safe_next(next_path: str | None) -> str:
    """Only a path on this server: a sign-in link must not send the user elsewhere."""
    if not next_path or not next_path.startswith("/") or next_path.startswith("//") or "\\" in next_path:
        return "/jobs"
    return next_path


PageProject = Annotated[str, Depends(page_project)]
ActionProject = Annotated[str, Depends(action_project)]
