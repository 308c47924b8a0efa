"""Pausing, resuming and cancelling a run (the API's controls)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.clock import utcnow
from engine.db.models import Run, Step
from engine.errors import Conflict
from engine.events import record_run
from engine.graph.cache import run_graph
from engine.lifecycle import RUN, RunStatus, StepState, TerminationReason, transition
from engine.ports import Work, WorkKind
from engine.run.ended import finish_turn, terminate_run
from engine.run.scheduler import Scheduler
from engine.runs import get_run


def pause_run(s: Session, org_id: str, run_id: str) -> Run:
    run = get_run(s, org_id, run_id)
    moved = transition(
        s,
        RUN,
        Run,
        run.id,
        RunStatus.PAUSED,
        expect=[RunStatus.NOT_STARTED, RunStatus.STARTED, RunStatus.RUNNING],
        values={"updated_at": utcnow()},
    )
    if not moved:
        raise Conflict(f"a {run.status} run cannot be paused")
    record_run(s, run)
    return run


def resume_run(s: Session, org_id: str, run_id: str) -> tuple[Run, list[Work]]:
    """paused -> running; the steps that waited are published again."""
    run = get_run(s, org_id, run_id)
    moved = transition(
        s,
        RUN,
        Run,
        run.id,
        RunStatus.RUNNING,
        expect=[RunStatus.PAUSED],
        values={"updated_at": utcnow()},
    )
    if not moved:
        raise Conflict(f"a {run.status} run cannot be resumed")
    record_run(s, run)
    ids = s.scalars(
        select(Step.id).where(
            Step.run_id == run.id, Step.state.in_([StepState.PENDING, StepState.QUEUED])
        )
    ).all()
    if not ids:
        # The last step settled while the run was paused, so no settlement is left to
        # close the turn: do it here (the UPDATE above holds the run's row lock).
        graph = run_graph(run.config)
        if finish_turn(Scheduler(session=s, run=run, graph=graph, now=utcnow())):
            s.flush()
            s.refresh(run)
    return run, [Work(kind=WorkKind.STEP, id=i) for i in ids]


def cancel_run(s: Session, org_id: str, run_id: str) -> tuple[Run, list[Work]]:
    # Locked: terminate_run adds to steps_done, which the flush writes back as a value.
    run = get_run(s, org_id, run_id, lock=True)
    if RUN.is_terminal(run.status):
        raise Conflict(f"the run is already {run.status}")
    revoke = terminate_run(s, run, RunStatus.CANCELLED, TerminationReason.CANCELLED, now=utcnow())
    if revoke is None:
        raise Conflict("the run ended while it was being cancelled")
    # terminate_run counted the closed steps on the object: flush before re-reading it,
    # or the refresh throws that progress away (the session does not autoflush).
    s.flush()
    s.refresh(run)
    return run, revoke
