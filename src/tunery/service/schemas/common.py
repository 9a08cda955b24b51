from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class ListPage(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None

    @classmethod
    def of(cls, items: list, has_more: bool = False, key: str = "id") -> ListPage:
        ids = [str(getattr(item, key)) for item in items]  # a dataset's versions are ints
        return cls(
            data=items, has_more=has_more, first_id=ids[0] if ids else None, last_id=ids[-1] if ids else None
        )


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True
