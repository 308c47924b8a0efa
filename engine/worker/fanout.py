"""A consensus block fans out: one sample row per answer wanted, under its owner's claim."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from engine.db.models import BlockExecution, ConsensusSample, Step
from engine.ids import new_id
from engine.lifecycle import StepState
from engine.ports import Work, WorkKind
from engine.worker.context import Job

log = logging.getLogger("quorum.worker")


def fan_out_samples(s: Session, job: Job, n: int, now: datetime) -> list[Work]:
    """Insert ``n`` queued samples of ``job``; the messages to publish after commit."""
    model = Step if job.kind == WorkKind.STEP else BlockExecution
    held = s.execute(
        update(model)
        .where(
            model.id == job.id,
            model.attempt == job.attempt,
            model.state == StepState.RUNNING,
        )
        .values(open_children=n, n_consensus=n)
    )
    if not getattr(held, "rowcount", 0):
        # The claim was superseded (or the row ended): its samples would be orphans.
        log.warning("stale consensus fan-out discarded", extra={"row": job.id})
        return []
    rows: list[dict[str, Any]] = [
        {
            "id": new_id(),
            "owner_kind": str(job.kind),
            "owner_id": job.id,
            "owner_attempt": job.attempt,
            "index": i,
            "state": StepState.QUEUED,
            "queued_at": now,
            "created_at": now,
            "attempt": 0,
        }
        for i in range(n)
    ]
    s.execute(insert(ConsensusSample), rows)
    return [Work(kind=WorkKind.SAMPLE, id=r["id"]) for r in rows]
