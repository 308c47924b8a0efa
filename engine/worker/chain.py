"""Successors run in-process, settled together: several chain steps, one commit.

A step claimed in-process (``engine.worker.successor``) is already committed ``running``
under this process. Its block runs and its settle, which creates the next step already
claimed, stays in the same transaction as the settles after it, until the chain ends, a
block that calls a model comes next, or ``chain_batch_ms`` have passed; then one commit.
Nothing a settle reports is seen before that commit, so a crash in between re-runs only
the uncommitted steps (at least once), from the first one, whose committed ``running`` row
is what recovery finds (a dead holder, a lease that runs out). An outcome once committed
is never changed: the re-run starts after it.

The transaction keeps the run's row locked (the first settle took the lock): the later
settles of the batch do not lock it again, and a cancel or pause waits for the commit.
"""

from __future__ import annotations

import time

from engine.blocks.registry import kind_of
from engine.events import coalesce_steps
from engine.refusals import screen
from engine.worker.context import Job, Message
from engine.worker.perform import perform
from engine.worker.steps import check_faults, settle_step_in


def batchable(job: Job) -> bool:
    """Whether ``job`` may run inside an open transaction (it is quick by its kind)."""
    kind = kind_of(job.block.type)
    return not (kind.calls_model or kind.fans_out or kind.awaits_input)


def run_batch(msg: Message, first: Job, *, budget: int) -> tuple[Job | None, int]:
    """Run ``first`` and the successors it leads to in one transaction, then commit.

    Returns the successor left claimed (committed ``running``) to run next, and the number
    of steps run. Any fault rolls the whole batch back; the caller re-runs from ``first``.
    """
    window_s = max(0, msg.settings.chain_batch_ms) / 1000
    deadline = time.monotonic() + window_s
    ran = 0
    job: Job | None = first
    with msg.db.transaction() as s:
        coalesce_steps(s)
        while job is not None:
            check_faults(msg, job)
            result = screen(perform(job, msg.tools, msg.settings))
            ran += 1
            # The run's row (counters, updated_at) is written once, by the flush before
            # the commit, not by every settle's first statement: the batch holds its lock
            # and the wings write steps with statements of their own, so nothing in
            # between reads the run's row from the database.
            with s.no_autoflush:
                settled = settle_step_in(s, msg, job, result, claim_next=ran < budget)
            job = msg.after.take(settled)
            if job is None or ran >= budget:
                break
            if time.monotonic() >= deadline or not batchable(job):
                break
    return job, ran
