"""Ending a run for good: its status, its reason and every step still open."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.counters import RUN_TERMINATIONS, increment
from engine.db.models import Run, Step
from engine.events import record_run, record_steps
from engine.lifecycle import RUN, STEP, RunStatus, StepState, TerminationReason, transition
from engine.ports import Work, WorkKind


def terminate_run(
    session: Session,
    run: Run,
    status: RunStatus,
    reason: TerminationReason | None,
    *,
    now: datetime,
    error: Mapping[str, Any] | None = None,
) -> list[Work] | None:
    """Move the run to a terminal status and close its open steps.

    Returns the running steps to revoke, or None if the run had already ended (the
    compare-and-set lost: someone else ended it first, and they closed the steps).
    """
    if not RUN.is_terminal(status):
        raise ValueError(f"{status} does not end a run")
    values: dict[str, object] = {
        "termination_reason": reason,
        "completed_at": now,
        "updated_at": now,
    }
    if error is not None:
        values["error"] = dict(error)
    sources = [s for s in RUN.sources_of(status)]
    moved = transition(session, RUN, Run, run.id, status, expect=sources, values=values)
    if not moved:
        return None
    increment(session, RUN_TERMINATIONS, reason=str(reason or "none"))  # metrics:
    run.status = status
    label = f"run_{status.value}"
    open_rows = session.execute(
        select(Step.id, Step.state).where(
            Step.run_id == run.id,
            Step.state.in_([s.value for s in StepState if not STEP.is_terminal(s)]),
        )
    ).all()
    running = [r.id for r in open_rows if r.state == StepState.RUNNING]
    waiting = [r.id for r in open_rows if r.state != StepState.RUNNING]
    # Cancelling a run cancels its steps; any other end skips what never started.
    waiting_target = StepState.CANCELLED if status == RunStatus.CANCELLED else StepState.SKIPPED
    done = 0
    done += transition(
        session,
        STEP,
        Step,
        waiting,
        waiting_target,
        expect=[StepState.PENDING, StepState.QUEUED],
        values={"reason": label, "completed_at": now},
    )
    done += transition(
        session,
        STEP,
        Step,
        running,
        StepState.CANCELLED,
        expect=[StepState.RUNNING],
        values={"reason": label, "completed_at": now},
    )
    run.steps_done += done
    record_steps(session, run.id, [r.id for r in open_rows])
    record_run(session, run)
    from engine.evaluation import run_ended

    run_ended(session, run, now)
    return [Work(kind=WorkKind.STEP, id=i) for i in running]
