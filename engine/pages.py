"""Keyset pagination: newest first, ``after`` an id, ``has_more`` without a count query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool

    @property
    def next_after(self) -> str | None:
        return getattr(self.items[-1], "id", None) if self.has_more and self.items else None


def paginate(
    session: Session, stmt: Select[Any], model: Any, *, limit: int, after: str | None
) -> Page[Any]:
    if after:
        stmt = stmt.where(model.id < after)
    rows = list(session.scalars(stmt.order_by(model.id.desc()).limit(limit + 1)))
    return Page(items=rows[:limit], has_more=len(rows) > limit)
