"""The worker-side engine: claim a step, execute its block, settle it, schedule the next.

Each message is handled in three phases: a short transaction that claims the row, the
block's work with no transaction open (it may take minutes), and a transaction that
locks the run, settles the step with a fenced compare-and-set and schedules what it
unblocked. Messages for new work are published only after that commit; if publishing
fails the rows stay ``queued`` and the outbox sweeper publishes them again.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, defer

from engine.answers import none_valid
from engine.blocks import MODEL_TYPES, n_consensus_of
from engine.claims import Claim, HolderCheck, claim, finish
from engine.clock import as_utc, utcnow
from engine.db.models import BlockExecution, ConsensusAttempt, ModelCall, Run, Step
from engine.db.session import Database, lock_row
from engine.dbfaults import DatabaseAway, database_away
from engine.events import EventBus, PollingBus, record_run, record_steps
from engine.execute import (
    BlockFailed,
    Outcome,
    Toolbox,
    call_model,
    model_outcome,
    model_request,
    reconcile_answers,
    run_block,
    unwrap,
    wrap,
)
from engine.graph.model import Block, Graph
from engine.graph.parse import parse_graph
from engine.ids import new_id
from engine.leases import LeaseKeeper
from engine.lifecycle import RUN, STEP, RunStatus, StepState, TerminationReason, transition
from engine.limits import charge, check_fan_out, measured
from engine.observe import observe_block_run, observe_claim, observe_sample
from engine.outbox import held_by
from engine.ports import Dispatcher, Metrics, NoMetrics, Work, WorkKind
from engine.providers.base import ModelResponse
from engine.refusals import settle_screened
from engine.scheduler import AWAITING, LoopingRisk, Resolved, Scheduler
from engine.settings import Settings
from engine.storable import clean_text
from engine.termination import terminate_run
from engine.usage import add_usage

log = logging.getLogger("quorum.orchestrator")


# How often a chain run in-process nudges event listeners (see ``_notify``).
NOTIFY_EVERY_S = 0.05

# The database went away under us: retry the message later, settle nothing. Only
# connection-level errors become DatabaseAway (engine.dbfaults); a value the database
# refuses fails its block instead (engine.refusals), since a retry would be refused again.
DATABASE_AWAY = (DatabaseAway,)


class RetryRow(Exception):
    """The database went away while a step ran in-process: retry that row, not the message's."""

    def __init__(self, *, kind: WorkKind, row_id: str) -> None:
        super().__init__(f"retry {kind} {row_id}")
        self.kind = kind
        self.row_id = row_id


class InjectedFault(RuntimeError):
    """Raised at a test-only fault point (``QUORUM_FAULT_POINTS``)."""


@dataclass(frozen=True, kw_only=True)
class FanOut:
    items: list[Any]


@dataclass(frozen=True, kw_only=True)
class FanOutConsensus:
    n: int


@dataclass(frozen=True, kw_only=True)
class AwaitInput:
    prompt: Any


Result = Outcome | BlockFailed | FanOut | FanOutConsensus | AwaitInput


@dataclass(frozen=True, kw_only=True)
class Job:
    """A claimed step or execution: everything phase 2 needs, read in phase 1."""

    kind: WorkKind
    id: str
    attempt: int
    organization_id: str
    run_id: str | None
    block: Block
    inputs: dict[str, Any]
    raw_inputs: dict[str, Any]
    scope: str = ""
    turn: int = 0
    visit: int = 1
    n_consensus: int = 1
    # When the claim started it (for the duration), None if unknown.
    started_at: datetime | None = None


@dataclass(kw_only=True)
class Orchestrator:
    db: Database
    dispatcher: Dispatcher
    tools: Toolbox
    settings: Settings
    worker: str
    holder_alive: HolderCheck
    _graphs: OrderedDict[str, Graph] = field(default_factory=OrderedDict)
    _max_visits: dict[str, int] = field(default_factory=dict)
    # Work created inside a transaction that has no scheduler (block executions),
    # published once that transaction has committed.
    _pending_publish: list[Work] = field(default_factory=list)
    _pending_revoke: list[Work] = field(default_factory=list)
    _retried: bool = False
    _touched: set[str] = field(default_factory=set)
    _notified_at: float = 0.0
    # run_step: may the settle claim a successor to run in-process (and which it claimed).
    _keep_next: bool = False
    _next: Job | None = None
    events: EventBus = field(default_factory=PollingBus)
    # Renews the leases of the rows this process works on (None: leases only run out).
    leases: LeaseKeeper | None = None
    metrics: Metrics = field(default_factory=NoMetrics)  # metrics:

    # -- entry points (one per message kind) ---------------------------------------

    # ``retried``: this message is the task adapter's retry after our own attempt raised
    # (the database went away mid-way). That attempt is over, so a row it left running
    # is taken over even though the process that claimed it is still alive.

    def run_step(self, step_id: str, *, retried: bool = False) -> None:
        # A step that makes another step ready claims it in the same transaction that
        # settles it, and runs it right here, in this process, instead of waiting for a
        # broker round trip (the rest of a fan-out is published as usual).
        budget = max(0, self.settings.inline_successors)
        self._keep_next = budget > 0
        kept = self._guarded(WorkKind.STEP, step_id, self._run_step, retried)
        while kept is not None:
            budget -= 1
            self._keep_next = budget > 0
            job = kept
            try:
                kept = self._guarded(
                    WorkKind.STEP, job.id, lambda _id, job=job: self._run_claimed(job), False
                )
            except DATABASE_AWAY as exc:
                # The retry must be about the row this process left running, not the
                # message's own row, which is already settled.
                raise RetryRow(kind=WorkKind.STEP, row_id=job.id) from exc
        self._keep_next = False

    def run_attempt(self, attempt_id: str, *, retried: bool = False) -> None:
        self._guarded(WorkKind.ATTEMPT, attempt_id, self._run_attempt, retried)

    def run_execution(self, execution_id: str, *, retried: bool = False) -> None:
        self._guarded(WorkKind.EXECUTION, execution_id, self._run_execution, retried)

    def _holder_check(self, holder: str) -> bool | None:
        return False if self._retried else self.holder_alive(holder)

    def _claim(self, s: Session, model: Any, row_id: str, now: Any) -> Claim | None:
        dead: set[str] = set()
        c = claim(
            s,
            model,
            row_id,
            worker=self.worker,
            holder_alive=self._holder_check,
            lease=timedelta(seconds=self.settings.lease_s),
            now=now,
            dead_holders=dead,
        )
        if c is not None and self.leases is not None:
            self.leases.hold(model, row_id, c.attempt)
        observe_claim(self.metrics, model, c, now)  # metrics:
        if dead:
            # The process that ran this row died, maybe in the middle of rows it ran
            # in-process after it: publish them again, their claims take them over.
            orphans = held_by(s, sorted(dead))
            if orphans:
                log.warning("recovering rows of a dead holder", extra={"count": len(orphans)})
            self._pending_publish.extend(orphans)
        return c

    def _guarded(self, kind: WorkKind, row_id: str, fn: Any, retried: bool) -> Job | None:
        """Handle one message; return the successor step it claimed to run next, if any."""
        # One message at a time per process (prefork pool): the pending lists are ours.
        self._pending_publish, self._pending_revoke = [], []
        self._retried = retried
        self._next = None
        try:
            fn(row_id)
            self._publish(self._pending_publish)
            self._revoke(self._pending_revoke)
            self._notify(force=self._next is None)
            return self._next
        except Exception as exc:
            self._next = None  # nothing runs next after a fault: the lease of it runs out
            if database_away(exc):
                # Let the task adapter retry the message; nothing was settled.
                raise DatabaseAway(f"database away: {type(exc).__name__}") from exc
            # The finally safety net: never leave a run "running".
            log.exception("orchestration fault", extra={"kind": str(kind), "id": row_id})
            try:
                self._safety_net(kind, row_id, exc)
            except Exception as again:
                if database_away(again):
                    raise DatabaseAway(f"database away: {type(again).__name__}") from again
                raise
            return None
        finally:
            if self.leases is not None:
                # Done with every row but the successor this process runs next: their
                # leases run out if this process left one unsettled.
                keep: list[tuple[Any, str]] = []
                if self._next is not None:
                    keep.append((Step, self._next.id))
                self.leases.keep_only(keep)

    # -- steps ------------------------------------------------------------------------

    def _run_step(self, step_id: str) -> None:
        job = self._claim_step(step_id)
        if job is not None:
            self._run_claimed(job)

    def _run_claimed(self, job: Job) -> None:
        if self.settings.has_fault("orchestrator.after_claim") or self.settings.has_fault(
            f"orchestrator.after_claim:{job.block.id}"
        ):
            raise InjectedFault(f"fault injected after claiming {job.block.id}")
        settle_screened(self._settle_step_fresh(job), self._execute(job), row=job.id)

    def _settle_step_fresh(self, job: Job) -> Any:
        def settle(result: Result) -> None:
            self._next = None  # a successor claimed by a rolled-back settle is not ours
            self._settle_step(job, result)

        return settle

    def _claim_step(self, step_id: str) -> Job | None:
        now = utcnow()
        with self.db.transaction() as s:
            c = self._claim(s, Step, step_id, now)
            if c is None:
                return None
            step: Step = c.row
            run = s.get(Run, step.run_id, options=_LIGHT_RUN)
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
                    _bump_done(s, run.id, 1)
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
            self._touched.add(run.id)
            return self._job_of(step, run)

    def _job_of(self, step: Any, run: Run) -> Job:
        block = self._graph(run).by_id[step.block_id]
        return _step_job(step, run, block, n_consensus=n_consensus_of(block.config))

    def _execute(self, job: Job) -> Result:
        block = job.block
        try:
            if block.type == "for_each":
                items = job.inputs.get("items")
                if not isinstance(items, list):
                    raise BlockFailed("bad_items", "a for_each needs a list on its 'items' input")
                check_fan_out(items, block.config.get("body") or [], self.settings)
                return FanOut(items=items)
            if block.type == "human_input":
                return AwaitInput(prompt=job.inputs.get("prompt"))
            if block.type in MODEL_TYPES and job.n_consensus > 1:
                return FanOutConsensus(n=job.n_consensus)
            outcome = run_block(block, job.inputs, self.tools)
            if block.type == "start":
                outcome = Outcome(outputs=outcome.outputs, active=outcome.active)
            return measured(outcome, job.inputs, self.settings)
        except BlockFailed as failure:
            return failure

    def _settle_step(self, job: Job, result: Result, *, session: Session | None = None) -> None:
        now = utcnow()
        observe_block_run(self.metrics, job, result, now)  # metrics:
        work: list[Work] = []
        revoke: list[Work] = []
        with self._tx(session) as s:
            run = lock_row(s, Run, job.run_id, options=_LIGHT_RUN) if job.run_id else None
            if run is None:
                return
            graph = self._graph(run)
            sched = Scheduler(
                session=s, run=run, graph=graph, now=now, max_visits=self._max_visits[run.id]
            )
            duration = _duration(job, now)
            try:
                result = charge(run, result, self.settings)
                if isinstance(result, BlockFailed):
                    if self._retry(s, Step, job, result, now):
                        self._record_calls(s, job, result.calls)
                        return
                    if finish(
                        s,
                        Step,
                        job.id,
                        StepState.ERROR,
                        attempt=job.attempt,
                        now=now,
                        values={
                            "error_type": result.error_type,
                            "error_message": result.message,
                            "duration_ms": duration,
                        },
                    ):
                        run.steps_done += 1
                        self._record_calls(s, job, result.calls)
                        error = {
                            "step_id": job.id,
                            "block_id": job.block.id,
                            "type": result.error_type,
                            "message": result.message,
                        }
                        revoke = (
                            terminate_run(
                                s,
                                run,
                                RunStatus.FAILED,
                                TerminationReason.EXECUTION_ERROR,
                                now=now,
                                error=error,
                            )
                            or []
                        )
                    # No early return: the revokes below must still be handed over.
                elif RUN.is_terminal(run.status):
                    if finish(
                        s,
                        Step,
                        job.id,
                        StepState.CANCELLED,
                        attempt=job.attempt,
                        now=now,
                        values={"reason": "run_ended"},
                    ):
                        run.steps_done += 1
                else:
                    if run.status == RunStatus.STARTED:
                        transition(
                            s, RUN, Run, run.id, RunStatus.RUNNING, expect=[RunStatus.STARTED]
                        )
                        run.status = RunStatus.RUNNING
                    if self._keep_next and session is None:
                        sched.claim_for = self.worker
                    resolved = self._apply(s, sched, job, result, now, duration)
                    if resolved is not None:
                        sched.step_resolved(resolved)
                    if not RUN.is_terminal(run.status) and sched.finish_turn():
                        log.info("run completed", extra={"run": run.id})
                    if self._keep_next and session is None and run.status == RunStatus.RUNNING:
                        self._claim_successor(s, sched, run, now)
            except LoopingRisk as exc:
                sched.dispatchable.clear()
                revoke = (
                    terminate_run(
                        s,
                        run,
                        RunStatus.ABORTED_LOOPING,
                        TerminationReason.LOOPING_RISK,
                        now=now,
                        error={"type": "looping_risk", "message": str(exc)},
                    )
                    or []
                )
            finally:
                run.updated_at = now
                work = list(sched.dispatchable)
                record_steps(s, run.id, [job.id])
                record_run(s, run)
                self._touched.add(run.id)
        self._pending_publish.extend(work)
        self._pending_revoke.extend(revoke)

    def _claim_successor(self, s: Session, sched: Scheduler, run: Run, now: datetime) -> None:
        """Claim one step this settle made ready, to run next in this process."""
        # No message for it: if this process dies while running it, the broker gives the
        # message this process is handling back (acks_late, reject_on_worker_lost), and
        # whoever gets it finds that step done, its holder dead, and this one running
        # under the same holder (``_claim``). The outbox sweeper is the last resort.
        if sched.claimed is not None:
            # Created already claimed by this process (Scheduler.claim_for).
            self._next = self._job_of(SimpleNamespace(**sched.claimed), run)
            if self.leases is not None:
                self.leases.hold(Step, self._next.id, self._next.attempt)
            return
        ready = next(
            (
                w
                for w in sched.dispatchable
                if w.kind == WorkKind.STEP and not w.delay_s and w.id in sched.created
            ),
            None,
        )
        if ready is None:
            return
        c = self._claim(s, Step, ready.id, now)
        if c is None:
            return
        record_steps(s, run.id, [ready.id])
        self._next = self._job_of(c.row, run)
        sched.dispatchable.remove(ready)

    def _apply(
        self, s: Session, sched: Scheduler, job: Job, result: Result, now: Any, duration: int | None
    ) -> Resolved | None:
        """Store a step's result; return it as resolved when downstream may now run."""
        if isinstance(result, FanOut):
            # Fenced like every completion: a superseded claim must not start iterations.
            held = s.execute(
                update(Step)
                .where(
                    Step.id == job.id,
                    Step.attempt == job.attempt,
                    Step.state == StepState.RUNNING,
                )
                .values(open_children=len(result.items))
            )
            if not getattr(held, "rowcount", 0):
                log.warning("stale fan-out discarded", extra={"row": job.id})
                return None
            base = Resolved(
                id=job.id,
                block_id=job.block.id,
                scope=job.scope,
                turn=job.turn,
                visit=job.visit,
                state=StepState.RUNNING,
                active=(),
                outputs={},
            )
            if result.items:
                sched.fan_out(base, result.items)
                return None
            result = Outcome(outputs={"results": []}, active=("results",))
        if isinstance(result, FanOutConsensus):
            self._fan_out_attempts(s, sched, WorkKind.STEP, job, result.n, now)
            return None
        if isinstance(result, AwaitInput):
            # The answer arrives in the next turn (POST .../input) on this block's handle.
            values: dict[str, Any] = {
                "outputs": wrap({"prompt": result.prompt}),
                "active_output_handles": [],
                "reason": AWAITING,
                "duration_ms": duration,
            }
            if finish(
                s, Step, job.id, StepState.COMPLETED, attempt=job.attempt, now=now, values=values
            ):
                sched.run.steps_done += 1
            return None
        assert isinstance(result, Outcome)
        outputs = job.raw_inputs if job.block.type == "start" else wrap(result.outputs)
        values = {
            "outputs": outputs,
            "active_output_handles": list(result.active),
            "duration_ms": duration,
            "consensus": result.consensus,
        }
        if not finish(
            s, Step, job.id, StepState.COMPLETED, attempt=job.attempt, now=now, values=values
        ):
            return None
        sched.run.steps_done += 1
        self._record_calls(s, job, result.calls)
        return Resolved(
            id=job.id,
            block_id=job.block.id,
            scope=job.scope,
            turn=job.turn,
            visit=job.visit,
            state=StepState.COMPLETED,
            active=result.active,
            outputs=dict(result.outputs),
        )

    # -- consensus attempts --------------------------------------------------------------

    def _fan_out_attempts(
        self, s: Session, sched: Scheduler | None, kind: WorkKind, job: Job, n: int, now: Any
    ) -> None:
        model = Step if kind == WorkKind.STEP else BlockExecution
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
            # The claim was superseded (or the row ended): its attempts would be orphans.
            log.warning("stale consensus fan-out discarded", extra={"row": job.id})
            return
        rows = [
            {
                "id": new_id(),
                "owner_kind": str(kind),
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
        s.execute(insert(ConsensusAttempt), rows)
        work = [Work(kind=WorkKind.ATTEMPT, id=r["id"]) for r in rows]
        if sched is not None:
            sched.dispatchable.extend(work)
        else:
            self._pending_publish.extend(work)

    def _run_attempt(self, attempt_id: str) -> None:
        now = utcnow()
        # Each write here is one statement: no BEGIN/COMMIT round trips (Database.autocommit).
        with self.db.autocommit(durable=False) as s:
            owner_job = None
            c = self._claim(s, ConsensusAttempt, attempt_id, now)
            if c is not None:
                owner_job = self._owner_job(s, c.row)
                if owner_job is None:
                    finish(
                        s,
                        ConsensusAttempt,
                        attempt_id,
                        StepState.CANCELLED,
                        attempt=c.attempt,
                        values={"reason": "owner_ended"},
                    )
            s.commit()
        if c is not None and owner_job is not None:
            self._call_attempt(attempt_id, c.attempt, owner_job, int(c.row.index))

    def _call_attempt(self, attempt_id: str, attempt: int, owner: Job, index: int) -> None:
        request = model_request(owner.block, owner.inputs, attempt=index)
        response: ModelResponse | BlockFailed
        try:
            response = call_model(self.tools.provider, request)
        except BlockFailed as failure:
            response = failure
        observe_sample(self.metrics, owner, response)  # metrics:
        settle_screened(
            lambda result: self._settle_attempt(attempt_id, attempt, owner, result),
            response,
            row=attempt_id,
        )

    def _owner_job(self, s: Session, att: ConsensusAttempt) -> Job | None:
        if att.owner_kind == WorkKind.STEP:
            step = s.get(Step, att.owner_id)
            if step is None or step.state != StepState.RUNNING or step.attempt != att.owner_attempt:
                return None
            run = s.get(Run, step.run_id)
            assert run is not None
            block = self._graph(run).by_id[step.block_id]
            return _step_job(step, run, block, n_consensus=step.n_consensus)
        ex = s.get(BlockExecution, att.owner_id)
        if ex is None or ex.state != StepState.RUNNING or ex.attempt != att.owner_attempt:
            return None
        return _execution_job(ex)

    def _settle_attempt(
        self, attempt_id: str, attempt: int, owner: Job, response: ModelResponse | BlockFailed
    ) -> None:
        now = utcnow()
        settle_owner: Result | None = None
        with self.db.transaction() as s:
            # Lock order is always run (or execution) first, then its children.
            if owner.kind == WorkKind.STEP:
                lock_row(s, Run, owner.run_id or "")
                owner_model: Any = Step
            else:
                owner_model = BlockExecution
            row = lock_row(s, owner_model, owner.id)
            if isinstance(response, BlockFailed):
                values = {"error_type": response.error_type, "error_message": response.message}
                moved = finish(
                    s,
                    ConsensusAttempt,
                    attempt_id,
                    StepState.ERROR,
                    attempt=attempt,
                    now=now,
                    values=values,
                )
                if moved:
                    self._record_calls(s, owner, response.calls)
            else:
                moved = finish(
                    s,
                    ConsensusAttempt,
                    attempt_id,
                    StepState.COMPLETED,
                    attempt=attempt,
                    now=now,
                    values={"output": response.data},
                )
                if moved:
                    self._record_calls(s, owner, (response,))
            if (
                not moved
                or row is None
                or row.state != StepState.RUNNING
                or row.attempt != owner.attempt
            ):
                return
            row.open_children = int(row.open_children) - 1
            if row.open_children > 0:
                return
            attempts = s.scalars(
                select(ConsensusAttempt)
                .where(
                    ConsensusAttempt.owner_kind == str(owner.kind),
                    ConsensusAttempt.owner_id == owner.id,
                    ConsensusAttempt.owner_attempt == owner.attempt,
                )
                .order_by(ConsensusAttempt.index)
            ).all()
            answers = [a.output if a.state == StepState.COMPLETED else None for a in attempts]
            failures = [(a.error_type, a.error_message) for a in attempts]
            settle_owner = self._reconcile(owner, answers, failures)
            if owner.kind == WorkKind.STEP:
                self._settle_step(owner, settle_owner, session=s)
            else:
                self._settle_execution(owner, settle_owner, session=s)

    def _reconcile(
        self, owner: Job, answers: list[Any], failures: list[tuple[str | None, str | None]]
    ) -> Result:
        if all(a is None for a in answers):
            return BlockFailed(*none_valid(failures))
        try:
            value, consensus = reconcile_answers(owner.block, answers, failures)
            outcome = model_outcome(owner.block, owner.inputs, value, consensus=consensus)
            return measured(outcome, owner.inputs, self.settings)
        except BlockFailed as failure:
            return failure

    # -- block executions ------------------------------------------------------------------

    def _run_execution(self, execution_id: str) -> None:
        now = utcnow()
        # The claim is one statement: committed by itself, without BEGIN and COMMIT round
        # trips (see Database.autocommit), which were a quarter of a short block's cost.
        with self.db.autocommit(durable=False) as s:
            c = self._claim(s, BlockExecution, execution_id, now)
            s.commit()
        if c is None:
            return
        job = _execution_job(c.row)
        # A consensus block's result is its fan-out (FanOutConsensus), settled like any other.
        settle_screened(
            lambda result: self._settle_execution(job, result), self._execute(job), row=job.id
        )

    def _settle_execution(
        self, job: Job, result: Result, *, session: Session | None = None
    ) -> None:
        if session is None and job.block.type not in MODEL_TYPES:
            # No model calls to record: every outcome below is a single statement.
            with self.db.autocommit() as s:
                self._settle_execution_in(s, job, result)
                s.commit()
            return
        with self._tx(session) as s:
            self._settle_execution_in(s, job, result)

    def _settle_execution_in(self, s: Session, job: Job, result: Result) -> None:
        now = utcnow()
        observe_block_run(self.metrics, job, result, now)  # metrics:
        duration = _duration(job, now)
        if isinstance(result, FanOutConsensus):
            self._fan_out_attempts(s, None, WorkKind.EXECUTION, job, result.n, now)
        elif isinstance(result, BlockFailed):
            if self._retry(s, BlockExecution, job, result, now) or _fail_execution(
                s, job, now, result.error_type, result.message, duration
            ):
                self._record_calls(s, job, result.calls)
        elif isinstance(result, Outcome):
            outputs = job.raw_inputs if job.block.type == "start" else wrap(result.outputs)
            if finish(
                s,
                BlockExecution,
                job.id,
                StepState.COMPLETED,
                attempt=job.attempt,
                now=now,
                values={
                    "outputs": outputs,
                    "active_output_handles": list(result.active),
                    "duration_ms": duration,
                    "consensus": result.consensus,
                },
            ):
                self._record_calls(s, job, result.calls)
        else:
            message = f"a {job.block.type} block cannot run alone"
            _fail_execution(s, job, now, "unsupported_block", message, duration)

    def _retry(self, s: Session, model: Any, job: Job, failure: BlockFailed, now: Any) -> bool:
        """Give a failed block another attempt if its config allows one (with backoff)."""
        retries = job.block.config.get("retries", 0)
        if not isinstance(retries, int) or job.attempt > retries:
            return False
        base = float(job.block.config.get("retry_backoff_s", 1.0))
        delay = min(300.0, base * 2 ** (job.attempt - 1))
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
                "queued_at": now + timedelta(seconds=delay),
                "error_type": failure.error_type,
                "error_message": failure.message,
            },
        )
        if moved:
            log.info(
                "retrying block", extra={"row": job.id, "attempt": job.attempt, "delay_s": delay}
            )
            self._pending_publish.append(Work(kind=job.kind, id=job.id, delay_s=delay))
        return bool(moved)

    # -- shared plumbing --------------------------------------------------------------------

    def _record_calls(self, s: Session, job: Job, calls: tuple[ModelResponse, ...]) -> None:
        if not calls:
            return
        s.execute(
            insert(ModelCall),
            [
                {
                    "id": new_id(),
                    "organization_id": job.organization_id,
                    "run_id": job.run_id if job.kind == WorkKind.STEP else None,
                    "turn_index": job.turn if job.kind == WorkKind.STEP else None,
                    "step_id": job.id if job.kind == WorkKind.STEP else None,
                    "execution_id": job.id if job.kind == WorkKind.EXECUTION else None,
                    "provider": c.provider,
                    "model": c.model,
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens,
                    "latency_ms": c.latency_ms,
                    "created_at": utcnow(),
                }
                for c in calls
            ],
        )
        if job.kind == WorkKind.STEP and job.run_id:
            run = s.get(Run, job.run_id)  # locked by the settling transaction
            if run is not None:
                run.usage = add_usage(run.usage or [], calls)

    def _graph(self, run: Run) -> Graph:
        # A run's graph never changes: parse it (and load its config) once per process.
        graph = self._graphs.get(run.id)
        if graph is None:
            graph = parse_graph(run.config, max_blocks=10_000)
            self._graphs[run.id] = graph
            settings = run.config.get("settings") or {}
            self._max_visits[run.id] = int(settings.get("max_block_visits", 10))
            if len(self._graphs) > 256:
                evicted, _ = self._graphs.popitem(last=False)
                self._max_visits.pop(evicted, None)
        return graph

    def _tx(self, session: Session | None) -> Any:
        return nullcontext(session) if session is not None else self.db.transaction()

    def _publish(self, work: list[Work]) -> None:
        if not work:
            return
        try:
            self.dispatcher.dispatch(work)
        except Exception:
            # The rows are committed as queued: the outbox sweeper publishes them again.
            log.warning(
                "publish failed; left to the outbox", extra={"count": len(work)}, exc_info=True
            )

    def _notify(self, *, force: bool) -> None:
        # A chain run in-process settles a step every few milliseconds: one nudge per
        # NOTIFY_EVERY_S is enough for listeners (they read every event from the table),
        # and the last step of the chain always nudges.
        if not self._touched:
            return
        now = time.monotonic()
        if not force and now - self._notified_at < NOTIFY_EVERY_S:
            return
        self._notified_at = now
        touched, self._touched = sorted(self._touched), set()
        try:
            self.events.notify(touched)
        except Exception:  # listeners poll anyway
            log.debug("event notification failed", exc_info=True)

    def _revoke(self, work: list[Work]) -> None:
        if not work:
            return
        try:
            self.dispatcher.revoke(work)
        except Exception:
            log.warning("revoke failed", exc_info=True)

    def _safety_net(self, kind: WorkKind, row_id: str, exc: Exception) -> None:
        now = utcnow()
        # The message may quote a refused value: write out what no column can hold.
        error = {"type": type(exc).__name__, "message": clean_text(str(exc))[:2000]}
        revoke: list[Work] = []
        with self.db.transaction() as s:
            if kind == WorkKind.ATTEMPT:
                att = s.get(ConsensusAttempt, row_id)
                if att is not None and att.owner_kind == WorkKind.EXECUTION:
                    # The fault belongs to the execution that fanned the attempt out.
                    kind, row_id = WorkKind.EXECUTION, att.owner_id
            if kind == WorkKind.EXECUTION:
                ex = s.get(BlockExecution, row_id)
                if ex is not None and ex.state == StepState.RUNNING:
                    finish(
                        s,
                        BlockExecution,
                        row_id,
                        StepState.ERROR,
                        attempt=ex.attempt,
                        now=now,
                        values={
                            "error_type": "finally_safety_net",
                            "error_message": error["message"],
                        },
                    )
                return
            run_id = _run_of(s, kind, row_id)
            run = lock_row(s, Run, run_id) if run_id else None
            if run is None or RUN.is_terminal(run.status):
                return
            revoke = (
                terminate_run(
                    s,
                    run,
                    RunStatus.FAILED,
                    TerminationReason.FINALLY_SAFETY_NET,
                    now=now,
                    error=error,
                )
                or []
            )
        self._revoke(revoke)


def _bump_done(s: Session, run_id: str, n: int) -> None:
    s.execute(update(Run).where(Run.id == run_id).values(steps_done=Run.steps_done + n))


def _fail_execution(
    s: Session, job: Job, now: datetime, error_type: str, message: str, duration: int | None
) -> bool:
    values = {"error_type": error_type, "error_message": message, "duration_ms": duration}
    return finish(
        s, BlockExecution, job.id, StepState.ERROR, attempt=job.attempt, now=now, values=values
    )


def _duration(job: Job, now: datetime) -> int | None:
    start = as_utc(job.started_at)
    return None if start is None else max(0, int((now - start).total_seconds() * 1000))


# A run read on the hot path without its big columns: the graph is parsed once per
# process (``Orchestrator._graph``), and the others load only if used.
_LIGHT_RUN = (defer(Run.config), defer(Run.metadata_), defer(Run.evaluation), defer(Run.usage))


def _run_of(s: Session, kind: WorkKind, row_id: str) -> str | None:
    if kind == WorkKind.STEP:
        step = s.get(Step, row_id)
        return step.run_id if step else None
    att = s.get(ConsensusAttempt, row_id)
    if att is None:
        return None
    if att.owner_kind == WorkKind.STEP:
        step = s.get(Step, att.owner_id)
        return step.run_id if step else None
    return None


def _step_job(step: Step, run: Run, block: Block, *, n_consensus: int) -> Job:
    # step.attempt is the current claim's number: the claim has already been committed.
    return Job(
        kind=WorkKind.STEP,
        id=step.id,
        attempt=step.attempt,
        organization_id=run.organization_id,
        run_id=run.id,
        block=block,
        inputs=unwrap(step.inputs),
        raw_inputs=dict(step.inputs or {}),
        scope=step.scope,
        turn=step.turn_index,
        visit=step.visit,
        n_consensus=n_consensus,
        started_at=step.started_at,
    )


def _execution_job(ex: BlockExecution) -> Job:
    config: Mapping[str, Any] = ex.block_config or {}
    block = Block(id=ex.block_id, type=ex.block_type, config=dict(config))
    return Job(
        kind=WorkKind.EXECUTION,
        id=ex.id,
        attempt=ex.attempt,
        organization_id=ex.organization_id,
        run_id=ex.run_id,
        block=block,
        inputs=unwrap(ex.inputs),
        raw_inputs=dict(ex.inputs or {}),
        n_consensus=ex.n_consensus,
        started_at=ex.started_at,
    )
