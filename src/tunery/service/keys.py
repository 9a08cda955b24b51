"""API keys: a random secret shown once, stored as its sha256; one check for every way in.

    secret = create_key(session, "team-a")      # "tk-…"; `tunery keys create --project team-a`
    live_key(session, secret=secret)            # the key's row, or None (unknown or revoked)
    live_key(session, key_id=row.id)            # the same check for a dashboard session's cookie
    project_of(session, secret)                 # "team-a", or None
    list_keys(session, "team-a")                # the project's keys, newest first (no secrets)
    revoke_key(session, key_id)                 # refused everywhere at once, its dashboard sessions ended

`live_key` is the only place that decides whether a key lets a caller in: the API's Bearer
dependency, the inference endpoints, the dashboard's sign-in and its session cookie all ask
it, so a revoked key is refused everywhere at once.

The secrets are 32 random bytes, so a plain sha256 (no salt, no slow hash) cannot be
reversed or guessed, and lets a request find its key with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tunery.store.tables import ApiKey, WebSession

PREFIX = "tk-"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_key(session: Session, project: str) -> str:
    if not project.strip():
        raise ValueError("a key needs a project name")
    secret = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(project=project.strip(), key_hash=hash_key(secret), prefix=secret[:10]))
    return secret


def live_key(session: Session, *, secret: str | None = None, key_id: str | None = None) -> ApiKey | None:
    """The unrevoked key with this secret (a Bearer key, the sign-in form) or this row id (a session)."""
    if (secret is None) == (key_id is None):
        raise TypeError("live_key takes exactly one of secret= and key_id=")
    live = select(ApiKey).where(ApiKey.revoked.is_(False))
    if secret is None:  # so key_id is given
        return session.scalar(live.where(ApiKey.id == key_id))
    digest = hash_key(secret)
    key = session.scalar(live.where(ApiKey.key_hash == digest))
    # The lookup compares digests, not secrets; compare_digest keeps the last check constant-time too.
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        return None
    return key


def project_of(session: Session, secret: str) -> str | None:
    key = live_key(session, secret=secret)
    return key.project if key else None


def list_keys(session: Session, project: str | None = None) -> list[ApiKey]:
    """Keys newest first, of one project or (the operator's CLI) of all; rows hold no secret."""
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if project is not None:
        query = query.where(ApiKey.project == project)
    return list(session.scalars(query))


def revoke_key(session: Session, key_id: str, project: str | None = None) -> ApiKey | None:
    """Revoke a key (of `project` only, when given) and end its dashboard sessions; None when no such key.

    `live_key` refuses a revoked key, so its Bearer requests and its sessions stop at the next request."""
    key = session.get(ApiKey, key_id)
    if key is None or (project is not None and key.project != project):
        return None
    key.revoked = True
    session.execute(update(WebSession).where(WebSession.key_id == key_id).values(revoked=True))
    return key
