"""The outbox: rows are the source of truth, messages are only a nudge.

Every dispatched row is committed ``pending`` (or ``queued`` by a worker) before its
message is published. If the publish is lost (the API died after the commit, Redis was
away, a worker was killed between commit and publish), the row stays open; this sweeper
publishes it again once it is older than a threshold. Rows are claimed with
``FOR UPDATE SKIP LOCKED`` so two sweepers never publish the same row in one round, and a
duplicate message is harmless anyway: the claim is a compare-and-set.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from engine.claims import HolderCheck
from engine.clock import utcnow
from engine.counters import OUTBOX_REPUBLISHED, increment
from engine.db.models import BlockExecution, ConsensusSample, Run, Step
from engine.db.session import Database
from engine.handoff import hand_off
from engine.leases import lease_expired
from engine.lifecycle import RunStatus, StepState
from engine.ports import Dispatcher, Work, WorkKind
from engine.store.dialects import store_for

_KINDS: Sequence[tuple[Any, WorkKind]] = (
    (Step, WorkKind.STEP),
    (BlockExecution, WorkKind.EXECUTION),
    (ConsensusSample, WorkKind.SAMPLE),
)


def sweep(
    db: Database,
    dispatcher: Dispatcher,
    *,
    older_than_s: float,
    batch: int = 500,
    lease_s: float | None = None,
    holder_alive: HolderCheck | None = None,
) -> int:
    """Publish again every open, undelivered row older than ``older_than_s``; return the count.

    With ``holder_alive``, ``running`` rows are swept too when their holder is provably
    gone (its process is dead) or no longer working on them (its heartbeat lease of
    ``lease_s`` ran out): their message may have vanished with the holder (a killed worker
    during a broker restart, a host cut off), and nothing else would ever deliver them
    again. The claim re-checks the holder, so this is safe.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than_s)
    work: list[Work] = []
    pending: dict[Any, list[str]] = {}
    with db.transaction() as s:
        for model, kind in _KINDS:
            stmt = select(model.id, model.state).where(
                model.state.in_([StepState.PENDING, StepState.QUEUED]),
                func.coalesce(model.queued_at, model.created_at) < cutoff,
            )
            if model is Step:
                # A paused run's steps wait as pending on purpose.
                stmt = stmt.join(Run, Run.id == Step.run_id).where(Run.status != RunStatus.PAUSED)
            stmt = stmt.order_by(model.created_at).limit(batch)
            stmt = store_for(s).skip_locked(stmt, model)
            rows = s.execute(stmt).all()
            if not rows:
                continue
            ids = [r.id for r in rows]
            # Restart the clock on queued rows so the next round waits before publishing again.
            s.execute(
                update(model)
                .where(model.id.in_(ids), model.state == StepState.QUEUED)
                .values(queued_at=now)
                .execution_options(synchronize_session=False)
            )
            pending[model] = [r.id for r in rows if r.state == StepState.PENDING]
            work.extend(Work(kind=kind, id=i) for i in ids)
        if holder_alive is not None:
            work.extend(_orphans(s, now, cutoff, lease_s, holder_alive, batch))
        if work:
            # Counted with the rows it restarts the clock on: one commit, not a second one.
            increment(s, OUTBOX_REPUBLISHED, len(work))
    if not work:
        return 0
    hand_off(db, dispatcher, work, mark=pending, strict=True)
    return len(work)


def _orphans(
    s: Any, now: Any, cutoff: Any, lease_s: float | None, holder_alive: HolderCheck, batch: int
) -> list[Work]:
    found: list[Work] = []
    lease = timedelta(seconds=lease_s) if lease_s is not None else None
    for model, kind in _KINDS:
        # Candidates: a lease that ran out (noticed as soon as it does, not only after
        # the outbox delay), or a row old enough that a dead local holder is worth a look.
        candidates = [model.started_at < cutoff]
        if lease is not None:
            candidates += [
                model.leased_until < now,
                and_(model.leased_until.is_(None), model.started_at < now - lease),
            ]
        stmt = select(model.id, model.worker, model.started_at, model.leased_until).where(
            model.state == StepState.RUNNING, or_(*candidates)
        )
        if hasattr(model, "open_children"):
            # A for_each or consensus owner waits on its children, not on a worker.
            stmt = stmt.where(model.open_children == 0)
        for row in s.execute(stmt.order_by(model.started_at).limit(batch)).all():
            # A live holder whose lease ran out is no longer working on the row.
            expired = lease is not None and lease_expired(row, now, lease)
            if expired or holder_alive(row.worker or "") is False:
                found.append(Work(kind=kind, id=row.id))
    return found


def held_by(s: Any, holders: Sequence[str]) -> list[Work]:
    """Rows left ``running`` by these (dead) holders: their claims will take them over."""
    found: list[Work] = []
    for model, kind in _KINDS:
        stmt = select(model.id).where(
            model.state == StepState.RUNNING, model.worker.in_(sorted(holders))
        )
        if hasattr(model, "open_children"):
            stmt = stmt.where(model.open_children == 0)  # waiting on children, not a worker
        found.extend(Work(kind=kind, id=i) for i in s.scalars(stmt))
    return found
