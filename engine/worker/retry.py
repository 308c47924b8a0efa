"""A failed block's retry: decided as a value, then persisted by one call."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from engine.execute import BlockFailed
from engine.lifecycle import STEP, StepState, transition
from engine.ports import Work
from engine.worker.context import Job

log = logging.getLogger("quorum.worker")


@dataclass(frozen=True, kw_only=True)
class RetryDecision:
    """Run the block again after ``delay_s`` (its config allows another attempt)."""

    delay_s: float


def decide_retry(job: Job) -> RetryDecision | None:
    retries = job.block.config.get("retries", 0)
    if not isinstance(retries, int) or job.attempt > retries:
        return None
    base = float(job.block.config.get("retry_backoff_s", 1.0))
    return RetryDecision(delay_s=min(300.0, base * 2 ** (job.attempt - 1)))


def persist_retry(
    s: Session,
    model: Any,
    job: Job,
    failure: BlockFailed,
    decision: RetryDecision,
    now: datetime,
) -> Work | None:
    """Move the row back to ``queued``; the message to publish after commit, if it moved."""
    # running -> queued is the table's retry move; queued_at in the future keeps the
    # outbox from re-publishing before the backoff is over.
    moved = transition(
        s,
        STEP,
        model,
        job.id,
        StepState.QUEUED,
        expect=[StepState.RUNNING],
        attempt=job.attempt,
        values={
            "queued_at": now + timedelta(seconds=decision.delay_s),
            "error_type": failure.error_type,
            "error_message": failure.message,
        },
    )
    if not moved:
        return None
    log.info(
        "retrying block",
        extra={"row": job.id, "attempt": job.attempt, "delay_s": decision.delay_s},
    )
    return Work(kind=job.kind, id=job.id, delay_s=decision.delay_s)


def retry(s: Session, model: Any, job: Job, failure: BlockFailed, now: datetime) -> Work | None:
    """Give a failed block another attempt if its config allows one (with backoff)."""
    decision = decide_retry(job)
    return None if decision is None else persist_retry(s, model, job, failure, decision, now)
