"""A project's API keys as the API shows them: never the secret, only its first characters."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tunery.store.tables import ApiKey


class KeyPublic(BaseModel):
    id: str
    object: Literal["api_key"] = "api_key"
    project: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    created_at: int
    revoked: bool

    @classmethod
    def of(cls, key: ApiKey) -> KeyPublic:
        return cls(
            id=key.id, project=key.project, prefix=key.prefix, created_at=key.created_at, revoked=key.revoked
        )
