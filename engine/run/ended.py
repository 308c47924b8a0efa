"""A turn or a run ends: its output, its status, its open steps, and its evaluation run.

``finish_turn`` closes a turn when nothing is open in it; ``terminate_run`` ends a run for
good. Either way a run that reached a terminal status goes through ``run_ended``: a
completed run starts its workflow's evaluation run (the evaluation workflow's start block
takes two json inputs, ``inputs``, the evaluated run's first input, and ``outputs``, its
last output); an evaluation run writes its id, status and outputs into the evaluated
run's ``evaluation``. An evaluation run never triggers another one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.blocks.registry import TURN_OUTPUT_TYPES, kind_of
from engine.counters import RUN_TERMINATIONS, increment
from engine.db.models import Run, Step, Turn
from engine.errors import QuorumError
from engine.events import record_run, record_steps
from engine.execute import unwrap
from engine.lifecycle import RUN, STEP, RunStatus, StepState, TerminationReason, transition
from engine.lineage import turns_seen_by
from engine.ports import Work, WorkKind
from engine.run.paths import AWAITING
from engine.run.scope import RunSteps
from engine.run.start import start_run


def finish_turn(sched: RunSteps) -> bool:
    """Close the turn when nothing is open in it; True when the run completed.

    A turn that reached a ``human_input`` block ends with the run waiting for the
    answer instead; the answer opens the next turn (``engine.run.turns``).
    """
    if sched.opened or sched.open_steps():
        return False
    s, run, now = sched.session, sched.run, sched.now
    awaiting = _close_turn(s, run, now)
    target = RunStatus.WAITING if awaiting else RunStatus.COMPLETED
    values: dict[str, Any] = {"updated_at": now}
    if target == RunStatus.COMPLETED:
        values["completed_at"] = now
    moved = transition(
        s,
        RUN,
        Run,
        run.id,
        target,
        expect=[RunStatus.RUNNING] if awaiting else [RunStatus.STARTED, RunStatus.RUNNING],
        values=values,
    )
    if not moved:
        return False
    run.status = target
    if target != RunStatus.COMPLETED:
        return False
    sched.dispatchable.extend(run_ended(s, run, now))
    return True


def _close_turn(s: Session, run: Run, now: datetime) -> bool:
    """Write the turn's output (its end blocks', or the question asked); True if awaiting."""
    ends = s.scalars(
        select(Step)
        .where(
            Step.run_id == run.id,
            Step.turn_index == run.current_turn,
            Step.scope == "",
            Step.block_type.in_(TURN_OUTPUT_TYPES),
            Step.state == StepState.COMPLETED,
        )
        .order_by(Step.created_at)
    ).all()
    output: dict[str, Any] = {}
    awaiting = [e for e in ends if kind_of(e.block_type).awaits_input and e.reason == AWAITING]
    for e in ends:
        if kind_of(e.block_type).ends_turn:
            output.update(unwrap(e.outputs))
    if awaiting:
        first = awaiting[0]
        output["awaiting_input"] = {
            "block_id": first.block_id,
            "step_id": first.step_id,
            "prompt": unwrap(first.outputs).get("prompt"),
        }
    s.execute(
        update(Turn)
        .where(Turn.run_id == run.id, Turn.turn_index == run.current_turn)
        .values(output=output, completed_at=now)
    )
    return bool(awaiting)


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
    increment(session, RUN_TERMINATIONS, reason=str(reason or "none"))
    run.status = status
    running = _close_open_steps(session, run, status, now)
    record_run(session, run)
    run_ended(session, run, now)
    return [Work(kind=WorkKind.STEP, id=i) for i in running]


def _close_open_steps(session: Session, run: Run, status: RunStatus, now: datetime) -> list[str]:
    """Cancel or skip every open step of an ended run; returns the running ones."""
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
    done = transition(
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
    return running


def _turns(s: Session, run: Run) -> list[Turn]:
    # A checkpoint run's first turns may be its parent's (engine.lineage).
    return list(turns_seen_by(s, run))


def run_ended(s: Session, run: Run, now: datetime) -> list[Work]:
    """Hook for every run that reached a terminal status; returns work to publish."""
    if run.is_evaluation:
        if run.original_run_id:
            _report_evaluation(s, run)
        return []
    if run.status != RunStatus.COMPLETED:
        return []
    workflow_id = ((run.config or {}).get("settings") or {}).get("evaluation_workflow_id")
    if not workflow_id:
        return []
    turns = _turns(s, run)
    inputs: dict[str, Any] = {
        "inputs": turns[0].input if turns else None,
        "outputs": turns[-1].output if turns else None,
    }
    try:
        # A savepoint: an evaluation that cannot start must not undo the run's completion.
        with s.begin_nested():
            started = start_run(
                s,
                run.organization_id,
                workflow_id=str(workflow_id),
                inputs=inputs,
                is_evaluation=True,
                original_run_id=run.id,
                initiator="evaluation",
            )
    except QuorumError as exc:
        run.evaluation = {
            "run_id": None,
            "status": "not_started",
            "error": exc.detail,
            "outputs": None,
        }
        return []
    run.evaluation = {
        "run_id": started.run.id,
        "status": RunStatus.NOT_STARTED.value,
        "termination_reason": None,
        "outputs": None,
    }
    return started.work


def _report_evaluation(s: Session, run: Run) -> None:
    turns = _turns(s, run)
    outputs = turns[-1].output if turns and run.status == RunStatus.COMPLETED else None
    s.execute(
        update(Run)
        .where(Run.id == run.original_run_id)
        .values(
            evaluation={
                "run_id": run.id,
                "status": str(run.status),
                "termination_reason": run.termination_reason,
                "outputs": outputs,
            }
        )
    )
