"""A step message: claim the step, run its block, settle it and schedule what it unblocked.

The claim is a short transaction; the block runs with no transaction open; the settle
locks the run, ends the step with a fenced compare-and-set and runs the scheduler. New
work is published only after that commit (engine.worker.entry); if publishing fails the
rows stay ``queued`` and the outbox sweeper publishes them again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from engine.claims import finish
from engine.clock import utcnow
from engine.db.models import Run, Step
from engine.db.session import lock_row
from engine.events import record_run, record_steps
from engine.execute import BlockFailed
from engine.lifecycle import RUN, STEP, RunStatus, StepState, TerminationReason, transition
from engine.limits import charge
from engine.observe import observe_block_run
from engine.ports import Work
from engine.refusals import settle_screened
from engine.run.ended import finish_turn, terminate_run
from engine.run.paths import LoopingRisk
from engine.run.scheduler import Scheduler
from engine.worker.calls import record_calls
from engine.worker.claim import claim_row
from engine.worker.context import LIGHT_RUN, Job, Message, Result, Settled, duration_ms
from engine.worker.outcome import apply_result
from engine.worker.perform import perform
from engine.worker.retry import retry
from engine.worker.successor import claim_successor, job_of

log = logging.getLogger("quorum.worker")


class InjectedFault(RuntimeError):
    """Raised at a test-only fault point (``QUORUM_FAULT_POINTS``)."""


def run_step(msg: Message, step_id: str, *, claim_next: bool) -> Job | None:
    """Handle one step message; return the successor it claimed to run next, if any."""
    job = claim_step(msg, step_id)
    return None if job is None else run_claimed(msg, job, claim_next=claim_next)


def claim_step(msg: Message, step_id: str) -> Job | None:
    now = utcnow()
    with msg.db.transaction() as s:
        c = claim_row(msg, s, Step, step_id, now)
        if c is None:
            return None
        step: Step = c.row
        run = s.get(Run, step.run_id, options=LIGHT_RUN)
        if run is None:
            return None
        if RUN.is_terminal(run.status):
            if finish(
                s,
                Step,
                step_id,
                StepState.CANCELLED,
                attempt=c.attempt,
                values={"reason": "run_ended"},
            ):
                s.execute(update(Run).where(Run.id == run.id).values(steps_done=Run.steps_done + 1))
            return None
        if run.status == RunStatus.PAUSED:
            # Hand the step back; resume publishes queued steps again.
            transition(
                s,
                STEP,
                Step,
                step_id,
                StepState.QUEUED,
                expect=[StepState.RUNNING],
                attempt=c.attempt,
            )
            return None
        if run.status == RunStatus.NOT_STARTED and transition(
            s,
            RUN,
            Run,
            run.id,
            RunStatus.STARTED,
            expect=[RunStatus.NOT_STARTED],
            values={"updated_at": now},
        ):
            record_run(s, run)
        record_steps(s, run.id, [step.id])
        msg.after.touched.add(run.id)
        return job_of(msg, step, run)


def check_faults(msg: Message, job: Job) -> None:
    faults = msg.settings
    if faults.has_fault("orchestrator.after_claim") or faults.has_fault(
        f"orchestrator.after_claim:{job.block.id}"
    ):
        raise InjectedFault(f"fault injected after claiming {job.block.id}")


def run_claimed(msg: Message, job: Job, *, claim_next: bool) -> Job | None:
    check_faults(msg, job)
    # settle_screened may settle twice (the database refused the first result): only the
    # settle that committed hands over a successor.
    successors: list[Job | None] = [None]

    def settle(result: Result) -> None:
        successors[0] = settle_step(msg, job, result, claim_next=claim_next)

    settle_screened(settle, perform(job, msg.tools, msg.settings), row=job.id)
    return successors[0]


def settle_step(msg: Message, job: Job, result: Result, *, claim_next: bool) -> Job | None:
    with msg.db.transaction() as s:
        settled = settle_step_in(s, msg, job, result, claim_next=claim_next)
    return msg.after.take(settled)


def settle_step_in(
    s: Session, msg: Message, job: Job, result: Result, *, claim_next: bool
) -> Settled:
    """Settle a step in ``s`` (which the caller commits); what to do after that commit."""
    now = utcnow()
    observe_block_run(msg.metrics, job, result, now)
    run = _locked_run(s, job.run_id)
    if run is None:
        return Settled()
    sched = Scheduler(
        session=s,
        run=run,
        graph=msg.graphs.graph(run),
        now=now,
        max_visits=msg.graphs.max_visits(run),
    )
    revoke: list[Work] = []
    successor: Job | None = None
    try:
        result = charge(run, result, msg.settings)
        if isinstance(result, BlockFailed):
            again = retry(s, Step, job, result, now)
            if again is not None:
                record_calls(s, job, result.calls)
                return Settled(publish=(again,), touched=(run.id,))
            revoke = _fail(s, run, job, result, now)
        elif RUN.is_terminal(run.status):
            _cancel(s, run, job, now)
        else:
            successor = _advance(s, msg, sched, job, result, claim_next=claim_next)
    except LoopingRisk as exc:
        sched.dispatchable.clear()
        revoke = _end(
            s,
            run,
            RunStatus.ABORTED_LOOPING,
            TerminationReason.LOOPING_RISK,
            now,
            {"type": "looping_risk", "message": str(exc)},
        )
    finally:
        run.updated_at = now
        record_steps(s, run.id, [job.id])
        record_run(s, run)
    return Settled(
        publish=tuple(sched.dispatchable),
        revoke=tuple(revoke),
        touched=(run.id,),
        successor=successor,
    )


# The runs this transaction has locked already (a batch of chain steps locks once).
_LOCKED = "quorum.locked_runs"


def _locked_run(s: Session, run_id: str | None) -> Run | None:
    if not run_id:
        return None
    locked: dict[str, Run] = s.info.setdefault(_LOCKED, {})
    run = locked.get(run_id)
    if run is None:
        run = lock_row(s, Run, run_id, options=LIGHT_RUN)
        if run is not None:
            locked[run_id] = run
    return run


def _fail(s: Session, run: Run, job: Job, result: BlockFailed, now: datetime) -> list[Work]:
    """The block failed for good: the step errs and its run fails."""
    values = {
        "error_type": result.error_type,
        "error_message": result.message,
        "duration_ms": duration_ms(job, now),
    }
    if not finish(s, Step, job.id, StepState.ERROR, attempt=job.attempt, now=now, values=values):
        return []
    run.steps_done += 1
    record_calls(s, job, result.calls)
    error = {
        "step_id": job.id,
        "block_id": job.block.id,
        "type": result.error_type,
        "message": result.message,
    }
    return _end(s, run, RunStatus.FAILED, TerminationReason.EXECUTION_ERROR, now, error)


def _end(
    s: Session,
    run: Run,
    status: RunStatus,
    reason: TerminationReason,
    now: datetime,
    error: Mapping[str, object],
) -> list[Work]:
    return terminate_run(s, run, status, reason, now=now, error=error) or []


def _cancel(s: Session, run: Run, job: Job, now: datetime) -> None:
    """The run ended while the block ran: the step is cancelled, its result dropped."""
    values = {"reason": "run_ended"}
    if finish(s, Step, job.id, StepState.CANCELLED, attempt=job.attempt, now=now, values=values):
        run.steps_done += 1


def _advance(
    s: Session, msg: Message, sched: Scheduler, job: Job, result: Result, *, claim_next: bool
) -> Job | None:
    """Store the result, schedule what it unblocked, close the turn; claim a successor."""
    run = sched.run
    if run.status == RunStatus.STARTED:
        transition(s, RUN, Run, run.id, RunStatus.RUNNING, expect=[RunStatus.STARTED])
        run.status = RunStatus.RUNNING
    if claim_next:
        sched.claim_for = msg.worker
    resolved = apply_result(s, sched, job, result, sched.now, duration_ms(job, sched.now))
    if resolved is not None:
        sched.step_resolved(resolved)
    if not RUN.is_terminal(run.status) and finish_turn(sched):
        log.info("run completed", extra={"run": run.id})
    if claim_next and run.status == RunStatus.RUNNING:
        return claim_successor(s, msg, sched, run, sched.now)
    return None
