"""Keyset pagination by id: ``order`` desc (newest first) or asc, ``after``/``before`` cursors.

"After" and "before" are meant in list order: with ``order=desc``, ``after=X`` pages on to
older rows and ``before=X`` back to newer ones. A page knows whether rows lie on either
side of it without a count query: one extra row fetched in its direction of travel, and an
``EXISTS`` probe on the cursor's side in the same statement when a cursor was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

T = TypeVar("T")
Order = Literal["asc", "desc"]


@dataclass(frozen=True, kw_only=True)
class PageRequest:
    limit: int = 50
    after: str | None = None
    before: str | None = None
    order: Order = "desc"

    def __post_init__(self) -> None:
        if self.after is not None and self.before is not None:
            raise ValueError("a page is asked for after one id or before one, not both")


@dataclass(frozen=True, kw_only=True)
class Page(Generic[T]):
    items: list[T]
    # More rows in the direction the page was asked for (forward unless ``before`` was given).
    has_more: bool
    # The first item's id when rows precede the page, the last one's when rows follow it.
    before: str | None = None
    after: str | None = None

    @property
    def next_after(self) -> str | None:
        return self.after


def paginate(session: Session, stmt: Select[Any], model: Any, page: PageRequest) -> Page[Any]:
    col = model.id
    desc = page.order == "desc"

    def ahead(x: str) -> Any:  # further along the list than x
        return col < x if desc else col > x

    def behind(x: str) -> Any:
        return col > x if desc else col < x

    forward = page.before is None
    cursor = page.after if forward else page.before
    query = stmt
    if cursor is not None:
        past = ahead(cursor) if forward else behind(cursor)
        # The cursor's own side (the cursor row, or anything beyond it), probed in the same
        # statement: one more indexed lookup, not one more round trip.
        other_side = stmt.with_only_columns(col).where(~past).limit(1).exists()
        query = query.where(past).add_columns(other_side)
    # Backwards, the rows nearest the cursor come first; the page is turned round below.
    sort = col.desc() if desc == forward else col.asc()
    result = session.execute(query.order_by(sort).limit(page.limit + 1)).all()
    more = len(result) > page.limit
    result = result[: page.limit]
    if not result:
        return Page(items=[], has_more=False)
    rows = [r[0] for r in result]
    if not forward:
        rows.reverse()
    beyond_cursor = cursor is not None and bool(result[0][1])
    rows_before = more if not forward else beyond_cursor
    rows_after = more if forward else beyond_cursor
    return Page(
        items=rows,
        has_more=more,
        before=rows[0].id if rows_before else None,
        after=rows[-1].id if rows_after else None,
    )
