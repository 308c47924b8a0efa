"""What the fleet is doing, read from the database for the API's ``/metrics``.

A handful of aggregate statements per scrape: the open-state indexes
(``ix_*_open_state``) serve the queue and backlog reads, so their cost follows the open
rows, not the history. Runs by status counts every run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from engine.clock import as_utc, utcnow
from engine.counters import CounterValue, read_counters
from engine.db.models import BlockExecution, ConsensusSample, Run, Step
from engine.db.session import Database
from engine.lifecycle import RunStatus, StepState
from engine.ports import WorkKind

ROW_KINDS: Sequence[tuple[WorkKind, Any]] = (
    (WorkKind.STEP, Step),
    (WorkKind.EXECUTION, BlockExecution),
    (WorkKind.SAMPLE, ConsensusSample),
)


@dataclass(frozen=True, kw_only=True)
class QueueStats:
    """Rows of one kind waiting in ``queued`` for a worker, and the oldest one's wait."""

    queued: int
    oldest_age_s: float
    # Pending or queued past the outbox threshold: the sweeper's next publish.
    backlog: int


@dataclass(frozen=True, kw_only=True)
class EngineStats:
    runs_by_status: Mapping[str, int]
    queues: Mapping[str, QueueStats]
    counters: Sequence[CounterValue]


def read_stats(db: Database, *, outbox_after_s: float, now: datetime | None = None) -> EngineStats:
    now = now or utcnow()
    with db.transaction() as s:
        rows = s.execute(select(Run.status, func.count()).group_by(Run.status)).all()
        counted = {status: count for status, count in rows}
        runs = {str(status): int(counted.get(status, 0)) for status in RunStatus}
        queues = {
            str(kind): _queue(s, model, now, now - timedelta(seconds=outbox_after_s))
            for kind, model in ROW_KINDS
        }
        counters = read_counters(s)
    return EngineStats(runs_by_status=runs, queues=queues, counters=counters)


def _queue(s: Any, model: Any, now: datetime, cutoff: datetime) -> QueueStats:
    queued, oldest = s.execute(
        select(func.count(), func.min(model.queued_at)).where(model.state == StepState.QUEUED)
    ).one()
    backlog = s.execute(
        select(func.count()).where(
            model.state.in_([StepState.PENDING, StepState.QUEUED]),
            func.coalesce(model.queued_at, model.created_at) < cutoff,
        )
    ).scalar_one()
    oldest_at = as_utc(oldest)
    # A retry's queued_at lies in the future (its backoff): it has not waited yet.
    age = max(0.0, (now - oldest_at).total_seconds()) if oldest_at is not None else 0.0
    return QueueStats(queued=int(queued), oldest_age_s=age, backlog=int(backlog))
