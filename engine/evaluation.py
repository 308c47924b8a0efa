"""Evaluation runs: a completed run starts a run of its workflow's evaluation workflow.

The evaluation workflow's start block takes two json inputs, ``inputs`` (the evaluated
run's first input) and ``outputs`` (its last output). When the evaluation run ends, its
id, status and outputs are written into the evaluated run's ``evaluation``. An
evaluation run never triggers another one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from engine.db.models import Run, Turn
from engine.errors import QuorumError
from engine.lifecycle import RunStatus
from engine.lineage import turns_seen_by
from engine.ports import Work


def _turns(s: Session, run: Run) -> list[Turn]:
    # A checkpoint run's first turns may be its parent's (engine.lineage).
    return list(turns_seen_by(s, run))


def run_ended(s: Session, run: Run, now: datetime) -> list[Work]:
    """Hook for every run that reached a terminal status; returns work to publish."""
    if run.is_evaluation:
        if run.original_run_id:
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
        return []
    if run.status != RunStatus.COMPLETED:
        return []
    workflow_id = ((run.config or {}).get("settings") or {}).get("evaluation_workflow_id")
    if not workflow_id:
        return []
    from engine.runs import start_run

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
