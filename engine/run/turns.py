"""Turns: a human_input block ends a turn; the posted answer opens the next one.

The answer becomes the ``response`` output of the block that waited, as a new step of
the next turn (``t1/ask``), and scheduling continues from there. Blocks of earlier turns
stay visible to the scheduler, so a join after the answer can use their outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.blocks.registry import AWAITING_TYPES
from engine.clock import utcnow
from engine.db.models import Run, Step, Turn
from engine.db.session import lock_row
from engine.errors import Conflict, FieldError, Invalid, NotFound
from engine.events import record_run
from engine.execute import wrap
from engine.graph.cache import max_visits as run_max_visits
from engine.graph.cache import run_graph
from engine.lifecycle import RUN, RunStatus, StepState, TerminationReason, transition
from engine.ports import Work
from engine.run.ended import finish_turn, terminate_run
from engine.run.paths import ANSWERED, AWAITING, LoopingRisk, Resolved
from engine.run.scheduler import Scheduler
from engine.schemas import SchemaUnusable, violations


def validate_answer(schema: Mapping[str, Any] | None, answer: Any) -> None:
    """422 unless ``answer`` fits the block's schema (evaluated by :mod:`engine.schemas`:
    no file or network access, linear-time patterns, bounded work)."""
    if not schema:
        return
    loc = ("body", "input")
    try:
        found = violations(schema, answer)
    except SchemaUnusable as exc:
        raise Invalid(
            "the block's schema cannot be evaluated", errors=[FieldError(loc=loc, msg=str(exc))]
        ) from None
    if found:
        raise Invalid(
            "the input does not fit the block's schema",
            errors=[FieldError(loc=(*loc, *v.path), msg=v.message) for v in found],
        )


@dataclass(frozen=True, kw_only=True)
class Awaiting:
    """The block a run waits on and the schema its answer must fit."""

    block_id: str
    schema: Mapping[str, Any] | None


def _waiting_step(s: Session, run: Run) -> Step:
    if run.status != RunStatus.WAITING:
        raise Conflict(f"the run is {run.status}, not waiting_for_user_input")
    waiting = s.scalars(
        select(Step)
        .where(
            Step.run_id == run.id,
            Step.turn_index == run.current_turn,
            Step.block_type.in_(AWAITING_TYPES),
            Step.reason == AWAITING,
        )
        .order_by(Step.created_at)
        .limit(1)
    ).first()
    if waiting is None:
        raise Conflict("the run has no block waiting for input")
    return waiting


def awaiting(s: Session, org_id: str, run_id: str) -> Awaiting:
    """What the run waits for, read without locking it (404/409 as :func:`answer_input`)."""
    run = s.get(Run, run_id)
    if run is None or run.organization_id != org_id:
        raise NotFound(f"run {run_id} not found")
    block_id = _waiting_step(s, run).block_id
    block = run_graph(run.config).by_id[block_id]
    return Awaiting(block_id=block_id, schema=block.config.get("schema"))


def answer_input(
    s: Session, org_id: str, run_id: str, answer: Any, *, checked: Awaiting | None = None
) -> list[Work]:
    """Answer a run waiting for user input: opens the next turn and schedules from there.

    The answer is validated before the run's row is locked (``checked``: already done by
    the caller, outside any transaction), so that evaluating a tenant's schema never holds
    the run; under the lock only the waiting block is checked again.
    """
    if checked is None:
        checked = awaiting(s, org_id, run_id)
        validate_answer(checked.schema, answer)
        s.expire_all()  # the lock below must read the run afresh
    run = lock_row(s, Run, run_id)
    if run is None or run.organization_id != org_id:
        raise NotFound(f"run {run_id} not found")
    waiting = _waiting_step(s, run)
    if waiting.block_id != checked.block_id:
        raise Conflict("the run moved on while the input was checked; read it and retry")
    s.execute(update(Step).where(Step.id == waiting.id).values(reason=ANSWERED))
    transition(s, RUN, Run, run.id, RunStatus.RUNNING, expect=[RunStatus.WAITING])
    run.status = RunStatus.RUNNING
    return open_turn(s, run, block_id=waiting.block_id, answer=answer, now=utcnow())


def open_turn(s: Session, run: Run, *, block_id: str, answer: Any, now: datetime) -> list[Work]:
    """Start turn ``current_turn + 1`` with ``answer`` on ``block_id``'s response handle."""
    turn = run.current_turn + 1
    run.current_turn = turn
    s.add(Turn(run_id=run.id, turn_index=turn, input=answer, started_at=now))
    graph = run_graph(run.config)
    block = graph.by_id[block_id]
    max_visits = run_max_visits(run.config)
    sched = Scheduler(session=s, run=run, graph=graph, now=now, max_visits=max_visits)
    row = sched.step_row(block, scope="", visit=1, inputs={}, state=StepState.COMPLETED, turn=turn)
    row.update(
        outputs=wrap({"response": answer}),
        active_output_handles=["response"],
        started_at=now,
        duration_ms=0,
    )
    sched.add_steps([row])
    try:
        sched.step_resolved(
            Resolved(
                id=row["id"],
                block_id=block_id,
                scope="",
                turn=turn,
                visit=1,
                state=StepState.COMPLETED,
                active=("response",),
                outputs={"response": answer},
            )
        )
        if not RUN.is_terminal(run.status):
            finish_turn(sched)
    except LoopingRisk as exc:
        sched.dispatchable.clear()
        terminate_run(
            s,
            run,
            RunStatus.ABORTED_LOOPING,
            TerminationReason.LOOPING_RISK,
            now=now,
            error={"type": "looping_risk", "message": str(exc)},
        )
    run.updated_at = now
    record_run(s, run)
    return list(sched.dispatchable)
