from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from tunery.service.api.deps import SessionDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(session: SessionDep, settings: SettingsDep) -> dict:
    """No key needed: is the server up and its database reachable."""
    session.execute(text("SELECT 1"))
    return {"status": "ok", "worker": "celery" if settings.broker_url else "local"}
