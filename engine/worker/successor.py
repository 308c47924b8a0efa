"""A step that makes another step ready claims it to run next, in this process.

No message for it: if this process dies while running it, the broker gives the message
this process is handling back (acks_late, reject_on_worker_lost), and whoever gets it
finds that step done, its holder dead, and this one running under the same holder
(``engine.worker.claim``). The outbox sweeper is the last resort.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy.orm import Session

from engine.blocks.base import n_consensus_of
from engine.db.models import Run, Step
from engine.events import record_steps
from engine.ports import WorkKind
from engine.run.scheduler import Scheduler
from engine.worker.claim import claim_row
from engine.worker.context import Job, Message, step_job


def job_of(msg: Message, step: Any, run: Run) -> Job:
    block = msg.graphs.graph(run).by_id[step.block_id]
    return step_job(step, run, block, n_consensus=n_consensus_of(block.config))


def claim_successor(
    s: Session, msg: Message, sched: Scheduler, run: Run, now: datetime
) -> Job | None:
    """Claim one step this settle made ready, to run next in this process."""
    if sched.claimed is not None:
        # Created already claimed by this process (Scheduler.claim_for).
        job = job_of(msg, SimpleNamespace(**sched.claimed), run)
        if msg.leases is not None:
            msg.leases.hold(Step, job.id, job.attempt)
        return job
    ready = next(
        (
            w
            for w in sched.dispatchable
            if w.kind == WorkKind.STEP and not w.delay_s and w.id in sched.created
        ),
        None,
    )
    if ready is None:
        return None
    c = claim_row(msg, s, Step, ready.id, now)
    if c is None:
        return None
    record_steps(s, run.id, [ready.id])
    sched.dispatchable.remove(ready)
    return job_of(msg, c.row, run)
