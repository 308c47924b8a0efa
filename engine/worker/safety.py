"""The safety net: a message that faulted never leaves its run (or execution) running."""

from __future__ import annotations

from sqlalchemy.orm import Session

from engine.claims import finish
from engine.clock import utcnow
from engine.db.models import BlockExecution, ConsensusSample, Run, Step
from engine.db.session import Database, lock_row
from engine.lifecycle import RUN, RunStatus, StepState, TerminationReason
from engine.ports import Work, WorkKind
from engine.run.ended import terminate_run
from engine.storable import clean_text


def safety_net(db: Database, kind: WorkKind, row_id: str, exc: Exception) -> list[Work]:
    """End what the faulted message was about; the running steps to revoke."""
    now = utcnow()
    # The message may quote a refused value: write out what no column can hold.
    error = {"type": type(exc).__name__, "message": clean_text(str(exc))[:2000]}
    with db.transaction() as s:
        if kind == WorkKind.SAMPLE:
            sample = s.get(ConsensusSample, row_id)
            if sample is not None and sample.owner_kind == WorkKind.EXECUTION:
                # The fault belongs to the execution that fanned the sample out.
                kind, row_id = WorkKind.EXECUTION, sample.owner_id
        if kind == WorkKind.EXECUTION:
            ex = s.get(BlockExecution, row_id)
            if ex is not None and ex.state == StepState.RUNNING:
                values = {"error_type": "finally_safety_net", "error_message": error["message"]}
                finish(
                    s,
                    BlockExecution,
                    row_id,
                    StepState.ERROR,
                    attempt=ex.attempt,
                    now=now,
                    values=values,
                )
            return []
        run_id = _run_of(s, kind, row_id)
        run = lock_row(s, Run, run_id) if run_id else None
        if run is None or RUN.is_terminal(run.status):
            return []
        reason = TerminationReason.FINALLY_SAFETY_NET
        return terminate_run(s, run, RunStatus.FAILED, reason, now=now, error=error) or []


def _run_of(s: Session, kind: WorkKind, row_id: str) -> str | None:
    if kind == WorkKind.STEP:
        step = s.get(Step, row_id)
        return step.run_id if step else None
    sample = s.get(ConsensusSample, row_id)
    if sample is None or sample.owner_kind != WorkKind.STEP:
        return None
    owner = s.get(Step, sample.owner_id)
    return owner.run_id if owner else None
