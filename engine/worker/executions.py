"""A block execution message (one block run alone, outside any run): claim, run, settle."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from engine.blocks.registry import kind_of
from engine.claims import finish
from engine.clock import utcnow
from engine.db.models import BlockExecution
from engine.execute import BlockFailed, Outcome
from engine.lifecycle import StepState
from engine.observe import observe_block_run
from engine.refusals import settle_screened
from engine.worker.calls import record_calls
from engine.worker.claim import claim_row
from engine.worker.context import (
    FanOutConsensus,
    Job,
    Message,
    Result,
    Settled,
    completed_values,
    duration_ms,
    execution_job,
)
from engine.worker.fanout import fan_out_samples
from engine.worker.perform import perform
from engine.worker.retry import retry


def run_execution(msg: Message, execution_id: str) -> None:
    now = utcnow()
    # The claim is one statement: committed by itself, without BEGIN and COMMIT round
    # trips (see Database.autocommit), which were a quarter of a short block's cost.
    with msg.db.autocommit(durable=False) as s:
        c = claim_row(msg, s, BlockExecution, execution_id, now)
        s.commit()
    if c is None:
        return
    job = execution_job(c.row)
    # A consensus block's result is its fan-out (FanOutConsensus), settled like any other.
    settle_screened(
        lambda result: settle_execution(msg, job, result),
        perform(job, msg.tools, msg.settings),
        row=job.id,
    )


def settle_execution(msg: Message, job: Job, result: Result) -> None:
    observe_block_run(msg.metrics, job, result, utcnow())
    if not kind_of(job.block.type).calls_model:
        # No model calls to record: every outcome below is a single statement.
        with msg.db.autocommit() as s:
            settled = settle_execution_in(s, job, result)
            s.commit()
    else:
        with msg.db.transaction() as s:
            settled = settle_execution_in(s, job, result)
    msg.after.take(settled)


def settle_execution_in(s: Session, job: Job, result: Result) -> Settled:
    """Settle an execution in ``s`` (which the caller commits); what to do after commit."""
    now = utcnow()
    duration = duration_ms(job, now)
    if isinstance(result, FanOutConsensus):
        return Settled(publish=tuple(fan_out_samples(s, job, result.n, now)))
    if isinstance(result, BlockFailed):
        again = retry(s, BlockExecution, job, result, now)
        if again is not None or fail_execution(
            s, job, now, result.error_type, result.message, duration
        ):
            record_calls(s, job, result.calls)
        return Settled(publish=() if again is None else (again,))
    if isinstance(result, Outcome):
        values = completed_values(job, result, duration)
        if finish(
            s,
            BlockExecution,
            job.id,
            StepState.COMPLETED,
            attempt=job.attempt,
            now=now,
            values=values,
        ):
            record_calls(s, job, result.calls)
        return Settled()
    message = f"a {job.block.type} block cannot run alone"
    fail_execution(s, job, now, "unsupported_block", message, duration)
    return Settled()


def fail_execution(
    s: Session, job: Job, now: datetime, error_type: str, message: str, duration: int | None
) -> bool:
    values = {"error_type": error_type, "error_message": message, "duration_ms": duration}
    return finish(
        s, BlockExecution, job.id, StepState.ERROR, attempt=job.attempt, now=now, values=values
    )
