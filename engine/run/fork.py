"""Checkpoint runs: a new run that takes over a parent's first turns and resumes at one.

Turns before ``resume_turn_index`` are not copied: the new run reads them in its ancestors
(``engine.lineage``), so forking a run of 10,000 steps writes as few rows as forking one.
Their model calls are not copied, so usage is counted once, in the parent. The resumed
turn starts again from the parent's turn input, or from the input given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.blocks.registry import AWAITING_TYPES
from engine.clock import utcnow
from engine.db.models import Run, Step, Turn
from engine.errors import FieldError, Invalid
from engine.events import record_run
from engine.graph.cache import run_graph
from engine.lifecycle import RUN, RunStatus, transition
from engine.lineage import child_lineage, count_inherited, lineage_of, seen_by, turns_seen_by
from engine.ports import Work
from engine.run.ended import finish_turn
from engine.run.scheduler import Scheduler
from engine.run.start import Started, check_inputs, start_steps
from engine.run.turns import open_turn, validate_answer
from engine.runs import get_run

_MISSING: Any = object()


def fork_run(
    s: Session, org_id: str, parent_id: str, *, resume_turn_index: int, input: Any = _MISSING
) -> Started:
    parent = get_run(s, org_id, parent_id)
    turns = turns_seen_by(s, parent)
    k = resume_turn_index
    _check_resumable(turns, k)
    answer = turns[k].input if input is _MISSING else input
    graph = run_graph(parent.config)
    resumed = _resumed_block(s, parent, k) if k > 0 else None
    if resumed is not None:
        # Before anything is written or locked: the schema is the tenant's.
        validate_answer(graph.by_id[resumed].config.get("schema"), answer)
    now = utcnow()
    child = _child_of(parent, k, now)
    s.add(child)
    s.flush()
    if resumed is None:
        check_inputs(graph, answer, loc=("body", "input"))
        s.add(Turn(run_id=child.id, turn_index=0, input=answer, started_at=now))
        work = start_steps(s, child, answer, now)
        record_run(s, child)
        s.flush()  # the answer reads the stored turns back
        return Started(run=child, work=work)
    # Turns before k are read where they are (engine.lineage), never copied: the fork
    # writes the same few rows whatever the parent's size.
    child.lineage = child_lineage(parent, k)
    inherited = count_inherited(s, lineage_of(child))
    child.steps_total = child.steps_done = inherited
    child.current_turn = k - 1
    resumed_work: list[Work] = open_turn(s, child, block_id=resumed, answer=answer, now=now)
    if not resumed_work and child.status == RunStatus.NOT_STARTED:
        # The answer reached no block: nothing will claim a step to start the run, so
        # start it here and close the turn (open_turn could not: the run had not started).
        resumed_work = _start_idle(s, child, now)
    s.flush()
    return Started(run=child, work=resumed_work)


def _check_resumable(turns: Sequence[Turn], k: int) -> None:
    loc = ("body", "resume_turn_index")
    if k < 0 or k >= len(turns):
        raise Invalid(
            f"the run has turns 0..{len(turns) - 1}; {k} is out of range",
            errors=[FieldError(loc=loc, msg="out of range")],
        )
    incomplete = [t.turn_index for t in turns[:k] if t.completed_at is None]
    if incomplete:
        raise Invalid(
            f"turn {incomplete[0]} of the parent is not complete",
            errors=[FieldError(loc=loc, msg=f"earlier turn {incomplete[0]} is incomplete")],
        )


def _child_of(parent: Run, k: int, now: datetime) -> Run:
    return Run(
        organization_id=parent.organization_id,
        workflow_id=parent.workflow_id,
        version=parent.version,
        version_name=parent.version_name,
        # Whatever the turn it resumes at, a new run starts not_started: its first claimed
        # step starts it, as for any run.
        status=RunStatus.NOT_STARTED,
        config=parent.config,
        metadata_=dict(parent.metadata_ or {}),
        initiator=parent.initiator,
        original_run_id=parent.id,
        parent_turn_index=k,
        is_evaluation=False,
        current_turn=0,
        steps_total=0,
        steps_done=0,
        created_at=now,
        updated_at=now,
    )


def _resumed_block(s: Session, parent: Run, k: int) -> str:
    """The resumed turn opens on the same human_input block that opened it in the parent."""
    resumed = s.scalar(
        select(Step.block_id)
        .where(seen_by(Step, parent), Step.turn_index == k, Step.block_type.in_(AWAITING_TYPES))
        .order_by(Step.created_at)
        .limit(1)
    )
    if resumed is None:
        raise Invalid(
            f"turn {k} of the parent did not start from a human_input block",
            errors=[FieldError(loc=("body", "resume_turn_index"), msg="not a resumable turn")],
        )
    return str(resumed)


def _start_idle(s: Session, run: Run, now: datetime) -> list[Work]:
    transition(s, RUN, Run, run.id, RunStatus.STARTED, expect=[RunStatus.NOT_STARTED])
    run.status = RunStatus.STARTED
    graph = run_graph(run.config)
    sched = Scheduler(session=s, run=run, graph=graph, now=now)
    finish_turn(sched)
    record_run(s, run)
    return list(sched.dispatchable)
