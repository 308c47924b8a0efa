"""Filters of list queries that an ``(organization_id, id)`` index can serve.

Ids are in ObjectId layout: their first 8 hex digits are the creation second. So a prefix of
an id is a range of ids, and a creation time range is (nearly) one too: the bounds on ``id``
only narrow what the index scans, and the exact test stays on ``created_at``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement

from engine.clock import as_utc

ID_LENGTH = 24
# An id takes its seconds from the clock a moment after ``created_at`` was read; an hour of
# slack on the id bounds keeps a row whose clock stepped meanwhile inside them.
_SLACK = timedelta(hours=1)


def id_starts_with(column: Any, prefix: str) -> list[ColumnElement[bool]]:
    """Ids that start with ``prefix`` (lowercase hex), as a range."""
    return [column >= prefix.ljust(ID_LENGTH, "0"), column <= prefix.ljust(ID_LENGTH, "f")]


def _utc(moment: datetime | None) -> datetime | None:
    aware = as_utc(moment)
    return aware.astimezone(UTC) if aware is not None else None


def _id_at(moment: datetime) -> str:
    seconds = min(max(int(moment.timestamp()), 0), 0xFFFFFFFF)
    return f"{seconds:08x}"


def created_between(
    model: Any, created_from: datetime | None, created_to: datetime | None
) -> list[ColumnElement[bool]]:
    """``created_from <= created_at < created_to`` (either bound optional).

    Bounds are compared in UTC, as times are stored: SQLite compares them as text.
    """
    out: list[ColumnElement[bool]] = []
    created_from = _utc(created_from)
    created_to = _utc(created_to)
    if created_from is not None:
        out += [
            model.created_at >= created_from,
            model.id >= _id_at(created_from - _SLACK).ljust(ID_LENGTH, "0"),
        ]
    if created_to is not None:
        out += [
            model.created_at < created_to,
            model.id <= _id_at(created_to + _SLACK).ljust(ID_LENGTH, "f"),
        ]
    return out
