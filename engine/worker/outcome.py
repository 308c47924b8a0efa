"""Storing a step's result under the run's lock: what it resolved for the scheduler."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from engine.claims import finish
from engine.db.models import Step
from engine.execute import Outcome, wrap
from engine.lifecycle import StepState
from engine.run.paths import AWAITING, Resolved
from engine.run.scheduler import Scheduler
from engine.worker.calls import record_calls
from engine.worker.context import (
    AwaitInput,
    FanOut,
    FanOutConsensus,
    Job,
    Result,
    completed_values,
)
from engine.worker.fanout import fan_out_samples

log = logging.getLogger("quorum.worker")


def apply_result(
    s: Session, sched: Scheduler, job: Job, result: Result, now: datetime, duration: int | None
) -> Resolved | None:
    """Store a step's result; return it as resolved when downstream may now run."""
    if isinstance(result, FanOut):
        if not _hold_fan_out(s, job, len(result.items)):
            return None
        if result.items:
            sched.fan_out(_resolved(job, StepState.RUNNING), result.items)
            return None
        result = Outcome(outputs={"results": []}, active=("results",))
    if isinstance(result, FanOutConsensus):
        sched.dispatchable.extend(fan_out_samples(s, job, result.n, now))
        return None
    if isinstance(result, AwaitInput):
        # The answer arrives in the next turn (POST .../input) on this block's handle.
        values: dict[str, Any] = {
            "outputs": wrap({"prompt": result.prompt}),
            "active_output_handles": [],
            "reason": AWAITING,
            "duration_ms": duration,
        }
        if finish(
            s, Step, job.id, StepState.COMPLETED, attempt=job.attempt, now=now, values=values
        ):
            sched.run.steps_done += 1
        return None
    assert isinstance(result, Outcome)
    return _complete(s, sched, job, result, now, duration)


def _hold_fan_out(s: Session, job: Job, n: int) -> bool:
    # Fenced like every completion: a superseded claim must not start iterations.
    held = s.execute(
        update(Step)
        .where(
            Step.id == job.id,
            Step.attempt == job.attempt,
            Step.state == StepState.RUNNING,
        )
        .values(open_children=n)
    )
    if not getattr(held, "rowcount", 0):
        log.warning("stale fan-out discarded", extra={"row": job.id})
        return False
    return True


def _complete(
    s: Session, sched: Scheduler, job: Job, result: Outcome, now: datetime, duration: int | None
) -> Resolved | None:
    values = completed_values(job, result, duration)
    if not finish(
        s, Step, job.id, StepState.COMPLETED, attempt=job.attempt, now=now, values=values
    ):
        return None
    sched.run.steps_done += 1
    record_calls(s, job, result.calls)
    return _resolved(job, StepState.COMPLETED, result.active, dict(result.outputs))


def _resolved(
    job: Job,
    state: StepState,
    active: tuple[str, ...] = (),
    outputs: dict[str, Any] | None = None,
) -> Resolved:
    return Resolved(
        id=job.id,
        block_id=job.block.id,
        scope=job.scope,
        turn=job.turn,
        visit=job.visit,
        state=state,
        active=active,
        outputs=outputs or {},
    )
