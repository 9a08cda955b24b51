"""Signing in to the dashboard: an API key once, then a server-side session; CSRF checks on every change.

    token = start_session(db, key_id="key-…")      # the cookie's value; the row keeps its sha256
    signed_in(db, token)                            # the live session row, or None (ended, expired, key revoked)
    end_session(db, token)                          # sign-out: the old cookie opens nothing afterwards

A session is a row of `web_sessions` (key, created, expires, revoked), so sign-out, `tunery keys
revoke` and `DELETE /api/keys/{id}` end it at once; the cookie is HttpOnly and SameSite=Strict.

SameSite does not stop a page on another port of the same host (same-site, not same-origin), so
every state-changing request also passes `check_same_origin` (a foreign `Origin` or a cross-origin
`Sec-Fetch-Site` is a 403) and carries the session's CSRF token (the synchronizer pattern: a hidden
`csrf_token` field in forms, an `X-CSRF-Token` header from scripts). The sign-in form, which has no
session yet, carries an HMAC of a nonce cookie (login CSRF). The standard library is all this needs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy import update
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from tunery.service import keys
from tunery.service.errors import ApiError
from tunery.store.tables import ApiKey, WebSession

COOKIE = "tunery_session"
SIGN_IN_COOKIE = "tunery_sign_in"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LIFETIME_SECONDS = 7 * 24 * 3600
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SAME_ORIGIN_FETCHES = ("same-origin", "none")  # `none`: the person typed the address or used a bookmark


class SignInRequired(Exception):
    """A page was asked for without a valid session; the dashboard answers with the sign-in page."""

    def __init__(self, next_path: str):
        self.next_path = next_path


def load_secret(data_dir: Path) -> bytes:
    """The secret the sign-in form's token is signed with, made on first use (server's user only)."""
    path = Path(data_dir) / "web-session-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(db: Session, key_id: str, now: float | None = None) -> str:
    """A new session for the key; returns the cookie's token (the table keeps only its sha256)."""
    token, started = secrets.token_urlsafe(32), int(now or time.time())
    db.add(
        WebSession(
            id=_digest(token), key_id=key_id, csrf_token=secrets.token_urlsafe(32), created_at=started,
            expires_at=started + LIFETIME_SECONDS, revoked=False,
        )
    )  # fmt: skip
    return token


def signed_in(db: Session, token: str | None, now: float | None = None) -> tuple[WebSession, ApiKey] | None:
    """The session of a cookie and its key, while neither is ended: not revoked, not expired."""
    if not token or len(token) > 200:
        return None
    row = db.get(WebSession, _digest(token))
    if row is None or row.revoked or row.expires_at < (now or time.time()):
        return None
    key = keys.live_key(db, key_id=row.key_id)  # a revoked key ends its sessions at once
    return (row, key) if key else None


def end_session(db: Session, token: str | None) -> None:
    if token and len(token) <= 200:
        db.execute(update(WebSession).where(WebSession.id == _digest(token)).values(revoked=True))


def secret_of(request: Request) -> bytes:
    app_state = request.app.state
    if getattr(app_state, "web_secret", None) is None:
        app_state.web_secret = load_secret(app_state.settings.data_dir)
    return app_state.web_secret


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def check_same_origin(request: Request) -> None:
    """A browser names where a request comes from; one from another origin (another port counts) is refused."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if (site is not None and site not in SAME_ORIGIN_FETCHES) or (
        origin is not None and origin != own_origin(request)
    ):
        raise ApiError(
            403, f"cross-origin request refused (Origin {origin or '-'}, Sec-Fetch-Site {site or '-'}): "
            "the dashboard only accepts changes from its own pages", code="cross_origin_refused",
        )  # fmt: skip


async def sent_csrf_token(request: Request) -> str | None:
    """The CSRF token a request carries: the header scripts send, or the hidden field of a form."""
    if request.method in SAFE_METHODS:
        return None
    if header := request.headers.get(CSRF_HEADER):
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        field = (await request.form()).get(CSRF_FIELD)  # FastAPI parsed it already: this is its cache
        return field if isinstance(field, str) else None
    return None


def check_csrf(expected: str, sent: str | None) -> None:
    if sent is None or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise ApiError(
            403, "missing or wrong CSRF token: reload the page and try again", code="csrf_token_invalid",
            param=CSRF_FIELD,
        )  # fmt: skip


def session_project(request: Request, sent: str | None) -> str | None:
    """The project of the request's session, looked up in a short session of its own (a streamed
    answer must not hold a transaction); a change must come from our origin with the session's token."""
    with request.app.state.sessions() as db:
        found = signed_in(db, request.cookies.get(COOKIE))
    if found is None:
        return None
    row, key = found
    request.state.csrf_token = row.csrf_token
    if request.method not in SAFE_METHODS:
        check_same_origin(request)
        check_csrf(row.csrf_token, sent)
    return key.project


def page_project(request: Request) -> str:
    """For pages: the signed-in project, or a redirect to the sign-in page."""
    project = session_project(request, None)
    if project is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return project


def action_project(request: Request, sent: Annotated[str | None, Depends(sent_csrf_token)]) -> str:
    """For the dashboard's own requests (fetch, EventSource, forms): the project, or 401 in the API's shape."""
    if request.method not in SAFE_METHODS:
        check_same_origin(request)  # before the session: a foreign page learns nothing either way
    project = session_project(request, sent)
    if project is None:
        raise ApiError(401, "not signed in: sign in to the dashboard again", code="not_signed_in")
    return project


@dataclass(frozen=True)
class Uploader:
    """Who sends an upload, known from its headers before the body is read."""

    project: str
    csrf_token: str  # the session's
    sent_in_header: bool

    def check_form(self, form: FormData) -> None:
        """A form sent without scripts carries its token in the hidden field, read with the body."""
        if not self.sent_in_header:
            field = form.get(CSRF_FIELD)
            check_csrf(self.csrf_token, field if isinstance(field, str) else None)


def uploader(request: Request) -> Uploader:
    """For an upload: origin, session cookie and (when sent) the CSRF header checked from the headers
    alone, so a request nobody signed in for is refused before its body is read; 401 without a session."""
    check_same_origin(request)
    with request.app.state.sessions() as db:
        found = signed_in(db, request.cookies.get(COOKIE))
    if found is None:
        raise ApiError(401, "not signed in: sign in to the dashboard again", code="not_signed_in")
    row, key = found
    request.state.csrf_token = row.csrf_token
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        check_csrf(row.csrf_token, header)
    return Uploader(key.project, row.csrf_token, header is not None)


def sign_in_token(secret: bytes, nonce: str) -> str:
    """The sign-in form's hidden token: an HMAC of the nonce cookie the form page set."""
    return hmac.new(secret, f"sign-in.{nonce}".encode(), hashlib.sha256).hexdigest()


def check_sign_in_form(request: Request, sent: str) -> None:
    """Login CSRF: a sign-in must come from our own sign-in page, with the token it handed out."""
    check_same_origin(request)
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    if not nonce or not hmac.compare_digest(sign_in_token(secret_of(request), nonce), sent):
        raise ApiError(
            403, "the sign-in form has expired: reload it and sign in again", code="csrf_token_invalid"
        )


def key_of_sign_in(session: Session, typed: str) -> ApiKey | None:
    """The live key row of an API key as typed on the sign-in page (`keys.live_key` decides)."""
    return keys.live_key(session, secret=typed.strip()) if typed.strip() else None


def sign_in_url(next_path: str) -> str:
    return "/signin?next=" + quote(next_path, safe="/")


def safe_next(next_path: str | None) -> str:
    """Only a path on this server: a sign-in link must not send the user elsewhere."""
    if not next_path or not next_path.startswith("/") or next_path.startswith("//") or "\\" in next_path:
        return "/jobs"
    return next_path


PageProject = Annotated[str, Depends(page_project)]
ActionProject = Annotated[str, Depends(action_project)]
UploaderDep = Annotated[Uploader, Depends(uploader)]
