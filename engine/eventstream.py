"""Following one run's events in order, with no gap, woken by the :class:`EventBus`.

The stored ``run_events`` rows are the record; the bus only says "look now". A follower reads
the rows after the last ``seq`` it handed out, hands them out in ``seq`` order, and waits on the
bus (or simply sleeps, with polling) when there is nothing new.

**No gap.** ``seq`` comes from a sequence, so on PostgreSQL two writers can commit out of
allocation order: a transaction holding seq 10 may still be open while seq 11 is already
visible. A follower that moved past 11 would never see 10. So, on PostgreSQL, before rows are
handed out the follower waits until every transaction that was writing ``run_events`` when it
read them has ended (such a transaction holds a ``RowExclusiveLock`` on the table from before
it draws a number until it ends), then reads the same range again. Any number below the
highest one seen was drawn before that row committed, hence by a transaction that had then
either committed (and is visible to the second read) or still held the lock (and was waited
for). SQLite serializes writers, so its numbers are always committed in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text

from engine.db.models import Run
from engine.db.session import Database
from engine.events import EventBus, since
from engine.lifecycle import RunStatus
from engine.store.dialects import store_for

TERMINAL_RUN = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.ABORTED_LOOPING}
)

# Transactions of other sessions that are writing run_events right now (PostgreSQL).
_WRITERS = text(
    """
    SELECT virtualtransaction FROM pg_locks
    WHERE locktype = 'relation'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND relation = to_regclass('run_events')
      AND mode = 'RowExclusiveLock'
      AND granted
      AND pid <> pg_backend_pid()
    """
)


@dataclass(frozen=True, kw_only=True)
class StoredEvent:
    seq: int
    kind: str
    data: dict[str, Any]

    @property
    def ends_run(self) -> bool:
        return self.kind == "run" and self.data.get("status") in TERMINAL_RUN


@dataclass(frozen=True, kw_only=True)
class Batch:
    events: list[StoredEvent]
    # The run was already terminal when the events were read (its final event is among
    # them or was handed out before).
    run_terminal: bool


def read_batch(
    db: Database, run_id: str, after: int, *, limit: int = 500, settle_s: float = 2.0
) -> Batch:
    """The run's next events after ``after`` (at most ``limit``), with no gap below the last.

    Each read is its own short transaction. ``settle_s`` bounds the wait for writers still
    open (a stuck writer must not stall the stream forever).
    """
    with db.transaction() as s:
        # Status first: a terminal status implies its event is committed, so visible below.
        status = s.scalar(select(Run.status).where(Run.id == run_id))
        rows = since(s, run_id, after, limit=limit)
        events = [StoredEvent(seq=r.seq, kind=r.kind, data=dict(r.data)) for r in rows]
        writers = set(s.scalars(_WRITERS)) if events and store_for(s).sees_writers else set()
    terminal = status in TERMINAL_RUN
    if not events or not store_for(db.engine).sees_writers:
        return Batch(events=events, run_terminal=terminal)
    if writers:
        _wait_for_writers(db, writers, settle_s)
    top = events[-1].seq
    with db.transaction() as s:
        rows = since(s, run_id, after, limit=limit)
        events = [
            StoredEvent(seq=r.seq, kind=r.kind, data=dict(r.data)) for r in rows if r.seq <= top
        ]
    return Batch(events=events, run_terminal=terminal)


def _wait_for_writers(db: Database, writers: set[str], settle_s: float) -> None:
    deadline = time.monotonic() + settle_s
    delay = 0.005
    while time.monotonic() < deadline:
        time.sleep(delay)
        with db.transaction() as s:
            if not writers & set(s.scalars(_WRITERS)):
                return
        delay = min(delay * 2, 0.05)


@contextmanager
def listening(bus: EventBus, run_id: str) -> Iterator[Callable[[float], None]]:
    """A ``wait(timeout_s)`` for one follower.

    A bus with ``listen(run_id)`` (Redis) holds one subscription for the whole follow, so a
    notification sent while the follower reads the database is not lost; otherwise each wait
    is ``bus.wait(run_id, timeout)``.
    """
    listen = getattr(bus, "listen", None)
    if listen is None:
        yield lambda timeout_s: bus.wait(run_id, timeout_s)
        return
    subscription = listen(run_id)
    try:
        yield subscription.wait
    finally:
        subscription.close()


HEARTBEAT = None


def follow(
    db: Database,
    bus: EventBus,
    run_id: str,
    after: int,
    *,
    heartbeat_s: float = 15.0,
    max_s: float = 3600.0,
    poll_s: float = 2.0,
    limit: int = 500,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[StoredEvent | None]:
    """Yield the run's events after ``after``, then new ones as they are stored.

    Yields ``None`` (:data:`HEARTBEAT`) when nothing was yielded for ``heartbeat_s``. Ends
    after an event with a terminal run status; when the run was already terminal, after the
    replay; and after ``max_s`` in any case (the client resumes from its last ``seq``). No
    transaction is held while waiting.
    """
    started = last_out = clock()
    with listening(bus, run_id) as wait:
        while True:
            batch = read_batch(db, run_id, after, limit=limit)
            for event in batch.events:
                yield event
                after = event.seq
                if event.ends_run:
                    return
            now = clock()
            if batch.events:
                last_out = now
            if len(batch.events) >= limit:
                continue
            if batch.run_terminal or now - started >= max_s:
                return
            if now - last_out >= heartbeat_s:
                yield HEARTBEAT
                last_out = now
            wait(max(0.0, min(poll_s, heartbeat_s - (now - last_out), max_s - (now - started))))
