"""Claiming and finishing dispatched rows: at least once, never twice.

A message may arrive twice (broker redelivery, the outbox re-publishing) or late (after a
cancel). A worker therefore *claims* a row with a compare-and-set that bumps its attempt
number, and finishes it with a compare-and-set fenced on that attempt. A row already
``running`` is taken over only when its holder is provably gone (the process is dead) or
no longer working on it (its heartbeat lease ran out, see ``engine.leases``); otherwise
the second message is a duplicate and is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from engine.clock import utcnow
from engine.leases import lease_expired
from engine.lifecycle import STEP, StepState, transition, transition_returning

log = logging.getLogger("quorum.claims")

# Answers whether the worker process named in a running row is alive: True/False when
# this process can tell, None when it cannot (another host), and the lease decides.
HolderCheck = Callable[[str], bool | None]


@dataclass(frozen=True, kw_only=True)
class Claim:
    row_id: str
    attempt: int
    worker: str
    taken_over: bool
    # The row as claimed (state running, this attempt), read by the claim itself.
    row: Any = None


def claim(
    session: Session,
    model: Any,
    row_id: str,
    *,
    worker: str,
    holder_alive: HolderCheck,
    lease: timedelta,
    now: datetime | None = None,
    dead_holders: set[str] | None = None,
) -> Claim | None:
    """Move a row to ``running`` for this worker, or return None if the message is stale.

    When the row cannot be claimed because it ended, or waits on its children, and the
    process that last held it is provably dead, that holder is added to ``dead_holders``:
    it may have died while running other rows in-process (a successor step, a consensus
    attempt), and this message, given back by the broker when it died, is how they are
    found again (see ``engine.outbox.held_by``).
    """
    now = now or utcnow()
    # The common case, a queued row, in one statement: the compare-and-set returns the row.
    claimed = _to_running(session, model, row_id, worker, now, lease, fence=None)
    if claimed is not None:
        return Claim(
            row_id=row_id, attempt=claimed.attempt, worker=worker, taken_over=False, row=claimed
        )
    row = session.get(model, row_id, populate_existing=True)
    if row is None:
        return None
    state = row.state
    taken_over = False
    if state == StepState.PENDING:
        # The worker beat the API's "mark queued": pending -> queued -> running, both legal.
        transition(
            session,
            STEP,
            model,
            row_id,
            StepState.QUEUED,
            expect=[StepState.PENDING],
            values={"queued_at": now},
        )
    elif state == StepState.RUNNING:
        if not _take_over(session, model, row, holder_alive, lease, now, dead_holders):
            return None
        taken_over = True
    elif state != StepState.QUEUED:
        _note_dead(row, holder_alive, dead_holders)
        return None
    claimed = _to_running(session, model, row_id, worker, now, lease, fence=int(row.attempt or 0))
    if claimed is None:
        return None
    return Claim(
        row_id=row_id, attempt=claimed.attempt, worker=worker, taken_over=taken_over, row=claimed
    )


def _take_over(
    session: Session,
    model: Any,
    row: Any,
    holder_alive: HolderCheck,
    lease: timedelta,
    now: datetime,
    dead_holders: set[str] | None,
) -> bool:
    """Hand a running row back to the queue if its holder is gone; False if it is not."""
    row_id = row.id
    if int(getattr(row, "open_children", 0) or 0) > 0:
        # A fanned-out row (for_each iterations, consensus samples) waits on its
        # children, whose rows were committed with it; no worker holds it, so there is
        # nothing to take over, and running it again would fan out a second time.
        log.info("message for a row waiting on its children dropped", extra={"row": row_id})
        _note_dead(row, holder_alive, dead_holders)
        return False
    # A live process whose lease ran out is not working on the row any more (it gave it
    # up, or it is cut off from the database): its late settle will be fenced off.
    if holder_alive(row.worker or "") is not False and not lease_expired(row, now, lease):
        log.info("duplicate delivery dropped", extra={"row": row_id, "holder": row.worker})
        return False
    # The holder is gone: running -> queued is the table's retry move.
    moved = transition(
        session,
        STEP,
        model,
        row_id,
        StepState.QUEUED,
        expect=[StepState.RUNNING],
        attempt=row.attempt,
    )
    if not moved:
        return False
    log.warning(
        "taking over a row whose holder is gone", extra={"row": row_id, "holder": row.worker}
    )
    return True


def _to_running(
    session: Session,
    model: Any,
    row_id: str,
    worker: str,
    now: datetime,
    lease: timedelta,
    *,
    fence: int | None,
) -> Any | None:
    """queued -> running for ``worker``, a new attempt number and lease: the claim itself."""
    return transition_returning(
        session,
        STEP,
        model,
        row_id,
        StepState.RUNNING,
        expect=[StepState.QUEUED],
        attempt=fence,
        values={"worker": worker, "started_at": now, "leased_until": now + lease},
        bump_attempt=True,
    )


def _note_dead(row: Any, holder_alive: HolderCheck, dead: set[str] | None) -> None:
    if dead is not None and row.worker and holder_alive(row.worker) is False:
        dead.add(row.worker)


def finish(
    session: Session,
    model: Any,
    row_id: str,
    target: StepState,
    *,
    attempt: int,
    values: Mapping[str, Any],
    now: datetime | None = None,
) -> bool:
    """End a claimed row, only if this attempt still holds it (fencing)."""
    moved = transition(
        session,
        STEP,
        model,
        row_id,
        target,
        expect=[StepState.RUNNING],
        attempt=attempt,
        values={"completed_at": now or utcnow(), **values},
    )
    if not moved:
        log.warning(
            "stale result discarded",
            extra={"row": row_id, "attempt": attempt, "target": str(target)},
        )
    return bool(moved)
