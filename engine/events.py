"""Run events: what changed in a run, stored with the change, streamed to listeners.

Rows are the truth and notifications only a nudge (as with the outbox): a listener reads
events after its last sequence number from the database, and a notification through the
:class:`EventBus` port only tells it to look now instead of at its next poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from engine.clock import rfc3339, utcnow
from engine.db.models import Run, RunEvent, Step


class EventBus(Protocol):
    def notify(self, run_ids: Iterable[str]) -> None:
        """Tell listeners of these runs that new events are stored (best effort)."""
        ...

    def wait(self, run_id: str, timeout_s: float) -> None:
        """Return when a notification for ``run_id`` arrives, or after ``timeout_s``."""
        ...


class PollingBus:
    """No broker for notifications: listeners simply poll the table."""

    def notify(self, run_ids: Iterable[str]) -> None:
        return None

    def wait(self, run_id: str, timeout_s: float) -> None:
        import time

        time.sleep(min(timeout_s, 0.5))


def run_event(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "status": str(run.status),
        "termination_reason": run.termination_reason,
        "current_turn": run.current_turn,
        "progress": {"steps_total": run.steps_total, "steps_done": run.steps_done},
    }


def step_event(row: Step | Mapping[str, Any]) -> dict[str, Any]:
    get = row.get if isinstance(row, Mapping) else lambda k: getattr(row, k)
    return {
        "id": get("id"),
        "run_id": get("run_id"),
        "step_id": get("step_id"),
        "block_id": get("block_id"),
        "block_type": get("block_type"),
        "turn_index": get("turn_index"),
        "state": str(get("state")),
        "attempt": get("attempt"),
        "reason": get("reason"),
        "error_type": get("error_type"),
    }


def record(s: Session, run_id: str, kind: str, data: Mapping[str, Any]) -> None:
    record_many(s, [(run_id, kind, data)])


def record_many(s: Session, events: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
    if not events:
        return
    now = utcnow()
    s.execute(
        insert(RunEvent),
        [
            {
                "run_id": run_id,
                "kind": kind,
                "data": {**data, "at": rfc3339(now)},
                "created_at": now,
            }
            for run_id, kind, data in events
        ],
    )


def record_step_rows(s: Session, run_id: str, rows: Sequence[Step | Mapping[str, Any]]) -> None:
    """One ``steps`` event listing the steps' new states (a fan-out is one event)."""
    if rows:
        record(s, run_id, "steps", {"steps": [step_event(r) for r in rows]})


def record_steps(s: Session, run_id: str, step_ids: Sequence[str]) -> None:
    """A ``steps`` event for these steps, read back as they stand in this transaction."""
    if not step_ids:
        return
    s.flush()
    rows = s.scalars(
        select(Step).where(Step.id.in_(list(step_ids))).execution_options(populate_existing=True)
    ).all()
    record_step_rows(s, run_id, rows)


def record_run(s: Session, run: Run) -> None:
    s.flush()
    s.refresh(run)
    record(s, run.id, "run", run_event(run))


def since(s: Session, run_id: str, after: int, *, limit: int = 500) -> list[RunEvent]:
    return list(
        s.scalars(
            select(RunEvent)
            .where(RunEvent.run_id == run_id, RunEvent.seq > after)
            .order_by(RunEvent.seq)
            .limit(limit)
        )
    )
