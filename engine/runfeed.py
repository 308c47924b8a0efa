"""Following the ``run`` events of every run of one organization: the runs list's live feed.

The per-run follower (:mod:`engine.eventstream`) serves one run; a page that lists runs
would need one stream per row. This one reads the same ``run_events`` rows, only those of
``kind = 'run'`` whose run belongs to the organization, in ``seq`` order and with no gap
(the same wait for writers still open on PostgreSQL). It polls: notifications are sent per
run, and a feed that wakes at most every ``poll_s`` seconds is live enough for a list.

Started without a resume point, the feed begins at the end of the table (a list page reads
the current state from the JSON API, then only needs what changes): its first item is a
:class:`Position`, the ``seq`` to resume from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import func, select

from engine.db.models import Run, RunEvent
from engine.db.session import Database
from engine.eventstream import _WRITERS, StoredEvent, _wait_for_writers
from engine.store.dialects import store_for

HEARTBEAT = None


@dataclass(frozen=True, kw_only=True)
class Position:
    """Where the feed starts: resume after ``seq`` (an SSE ``id`` without an event)."""

    seq: int


def _read(db: Database, org_id: str, after: int, limit: int) -> tuple[list[StoredEvent], bool]:
    stmt = (
        select(RunEvent.seq, RunEvent.kind, RunEvent.data)
        .join(Run, Run.id == RunEvent.run_id)
        .where(RunEvent.seq > after, RunEvent.kind == "run", Run.organization_id == org_id)
        .order_by(RunEvent.seq)
        .limit(limit)
    )
    with db.transaction() as s:
        events = [StoredEvent(seq=r.seq, kind=r.kind, data=dict(r.data)) for r in s.execute(stmt)]
        writers = set(s.scalars(_WRITERS)) if events and store_for(s).sees_writers else set()
    if writers:
        _wait_for_writers(db, writers, 2.0)
    return events, bool(writers)


def read_org_batch(db: Database, org_id: str, after: int, *, limit: int = 500) -> list[StoredEvent]:
    """The organization's next ``run`` events after ``after``, with no gap below the last.

    As in :func:`engine.eventstream.read_batch`: when a writer of ``run_events`` was open
    during the read, wait for it, then read the same range again (up to the last seq seen).
    """
    events, waited = _read(db, org_id, after, limit)
    if not waited:
        return events
    top = events[-1].seq
    again, _ = _read(db, org_id, after, limit)
    return [e for e in again if e.seq <= top]


def end_position(db: Database) -> int:
    """The last ``seq`` stored, once every number below it is committed or rolled back."""
    with db.transaction() as s:
        top = s.scalar(select(func.max(RunEvent.seq))) or 0
        writers = set(s.scalars(_WRITERS)) if store_for(s).sees_writers else set()
    if writers:
        _wait_for_writers(db, writers, 2.0)
    return int(top)


def follow_org(
    db: Database,
    org_id: str,
    after: int | None,
    *,
    heartbeat_s: float = 15.0,
    max_s: float = 3600.0,
    poll_s: float = 1.0,
    limit: int = 500,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[StoredEvent | Position | None]:
    """Yield the organization's ``run`` events after ``after`` as they are stored.

    ``after`` None starts at the end of the table and yields its :class:`Position` first.
    Yields ``None`` (:data:`HEARTBEAT`) after ``heartbeat_s`` of silence; ends after
    ``max_s`` (the client resumes from its last ``seq``). No transaction is held between
    reads.
    """
    started = last_out = clock()
    if after is None:
        after = end_position(db)
        yield Position(seq=after)
    while True:
        events = read_org_batch(db, org_id, after, limit=limit)
        for event in events:
            yield event
            after = event.seq
        now = clock()
        if events:
            last_out = now
        if len(events) >= limit:
            continue
        if now - started >= max_s:
            return
        if now - last_out >= heartbeat_s:
            yield HEARTBEAT
            last_out = now
        sleep(max(0.0, min(poll_s, heartbeat_s - (now - last_out), max_s - (now - started))))
