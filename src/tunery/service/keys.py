"""API keys: a random secret shown once, stored as its sha256.

    secret = create_key(session, "team-a")      # "tk-…"; `tunery keys create --project team-a`
    project_of(session, secret)                 # "team-a", or None

The secrets are 32 random bytes, so a plain sha256 (no salt, no slow hash) cannot be
reversed or guessed, and lets a request find its key with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunery.store.tables import ApiKey

PREFIX = "tk-"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_key(session: Session, project: str) -> str:
    if not project.strip():
        raise ValueError("a key needs a project name")
    secret = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(project=project.strip(), key_hash=hash_key(secret), prefix=secret[:10]))
    return secret


def project_of(session: Session, secret: str) -> str | None:
    digest = hash_key(secret)
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked.is_(False)))
    # The lookup compares digests, not secrets; compare_digest keeps the last check constant-time too.
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        return None
    return key.project
