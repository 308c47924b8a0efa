"""Keyset pages in both orders, forwards and backwards, with the cursors around each page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from engine.pages import Page, PageRequest, paginate


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "rows"
    id: Mapped[str] = mapped_column(String(24), primary_key=True)


IDS = [f"{i:024x}" for i in range(1, 8)]  # seven rows, ids ascending


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all(Row(id=i) for i in IDS)
        s.commit()
        yield s
    engine.dispose()


def page(s: Session, **kw: Any) -> Page[Row]:
    return paginate(s, select(Row), Row, PageRequest(**kw))


def ids(p: Page[Row]) -> list[str]:
    return [r.id for r in p.items]


def test_walking_forwards_newest_first(session: Session) -> None:
    first = page(session, limit=3)
    assert ids(first) == IDS[6:3:-1]
    assert (first.has_more, first.before, first.after) == (True, None, IDS[4])
    assert first.next_after == IDS[4]
    second = page(session, limit=3, after=first.after)
    assert ids(second) == IDS[3:0:-1]
    assert (second.has_more, second.before, second.after) == (True, IDS[3], IDS[1])
    last = page(session, limit=3, after=second.after)
    assert ids(last) == [IDS[0]]
    assert (last.has_more, last.before, last.after) == (False, IDS[0], None)


def test_walking_forwards_oldest_first(session: Session) -> None:
    first = page(session, limit=4, order="asc")
    assert ids(first) == IDS[:4]
    assert (first.has_more, first.before, first.after) == (True, None, IDS[3])
    rest = page(session, limit=4, order="asc", after=first.after)
    assert ids(rest) == IDS[4:]
    assert (rest.has_more, rest.before, rest.after) == (False, IDS[4], None)


def test_walking_backwards_returns_the_rows_next_to_the_cursor_in_list_order(
    session: Session,
) -> None:
    # Newest first: "before" the 2nd-oldest row are the newer rows, nearest first taken.
    back = page(session, limit=2, before=IDS[1])
    assert ids(back) == [IDS[3], IDS[2]]
    assert (back.has_more, back.before, back.after) == (True, IDS[3], IDS[2])
    top = page(session, limit=5, before=back.before)
    assert ids(top) == IDS[6:3:-1]
    assert (top.has_more, top.before, top.after) == (False, None, IDS[4])
    asc = page(session, limit=10, order="asc", before=IDS[3])
    assert ids(asc) == IDS[:3]
    assert (asc.has_more, asc.before, asc.after) == (False, None, IDS[2])


def test_a_cursor_past_the_end_gives_an_empty_page(session: Session) -> None:
    empty = page(session, limit=3, after=IDS[0])
    assert (ids(empty), empty.has_more, empty.before, empty.after) == ([], False, None, None)


def test_one_cursor_at_a_time() -> None:
    with pytest.raises(ValueError, match="not both"):
        PageRequest(after=IDS[0], before=IDS[1])
