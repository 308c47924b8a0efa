"""The worker's entry points, one per message kind, and what wraps every message.

``Worker`` lives as long as the process; each message gets a frozen ``Message`` built
from it. After the message's work has committed, its new work is published, running
steps of ended runs are revoked and event listeners are nudged. A fault that is not
the database going away goes to the safety net (engine.worker.safety).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine import handoff
from engine.claims import HolderCheck
from engine.db.models import Step
from engine.db.session import Database
from engine.dbfaults import DatabaseAway, database_away
from engine.events import EventBus, PollingBus
from engine.execute import Toolbox
from engine.leases import LeaseKeeper
from engine.ports import Dispatcher, Metrics, NoMetrics, WorkKind
from engine.settings import Settings
from engine.worker.chain import run_batch
from engine.worker.context import Job, Message, RunGraphs
from engine.worker.executions import run_execution
from engine.worker.safety import safety_net
from engine.worker.samples import run_sample
from engine.worker.steps import run_claimed, run_step

log = logging.getLogger("quorum.worker")

# How often a chain run in-process nudges event listeners (see ``Worker._notify``).
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


Handler = Callable[[Message], Job | None]


@dataclass(kw_only=True)
class Worker:
    db: Database
    dispatcher: Dispatcher
    tools: Toolbox
    settings: Settings
    # This process's identity (host:pid), written on the rows it claims.
    worker: str
    holder_alive: HolderCheck
    events: EventBus = field(default_factory=PollingBus)
    # Renews the leases of the rows this process works on (None: leases only run out).
    leases: LeaseKeeper | None = None
    graphs: RunGraphs = field(default_factory=RunGraphs)
    metrics: Metrics = field(default_factory=NoMetrics)
    _touched: set[str] = field(default_factory=set)
    _notified_at: float = 0.0

    # ``retried``: this message is the task adapter's retry after our own attempt raised.

    def run_step(self, step_id: str, *, retried: bool = False) -> None:
        # A step that makes another step ready claims it in the same transaction that
        # settles it, and runs it right here, in this process, instead of waiting for a
        # broker round trip (the rest of a fan-out is published as usual).
        budget = max(0, self.settings.inline_successors)
        kept = self._handle(
            WorkKind.STEP,
            step_id,
            lambda m: run_step(m, step_id, claim_next=budget > 0),
            retried,
        )
        batching = self.settings.chain_batch_ms > 0
        while kept is not None:
            job = kept
            try:
                if batching:
                    try:
                        kept, ran = self._batch(job, budget)
                        budget -= ran
                        continue
                    except DATABASE_AWAY:
                        raise
                    except Exception:
                        # The batch rolled back: from its first step (still committed
                        # running under this process) on, one commit per step, so the
                        # fault is met again where it is handled step by step.
                        log.warning("chain batch rolled back", extra={"row": job.id})
                        batching = False
                budget -= 1
                handler = functools.partial(run_claimed, job=job, claim_next=budget > 0)
                kept = self._handle(WorkKind.STEP, job.id, handler, False)
            except DATABASE_AWAY as exc:
                # The retry must be about the row this process left running, not the
                # message's own row, which is already settled.
                raise RetryRow(kind=WorkKind.STEP, row_id=job.id) from exc

    def _batch(self, job: Job, budget: int) -> tuple[Job | None, int]:
        """Run ``job`` and its in-process successors with one commit (engine.worker.chain)."""
        msg = self.message()
        try:
            kept, ran = run_batch(msg, job, budget=budget)
        except BaseException as exc:
            if self.leases is not None:
                # Rolled back: only the batch's first row is still this process's.
                self.leases.keep_only([(Step, job.id)])
            if isinstance(exc, Exception) and database_away(exc):
                raise DatabaseAway(f"database away: {type(exc).__name__}") from exc
            raise
        handoff.publish(self.dispatcher, msg.after.publish)
        handoff.revoke(self.dispatcher, msg.after.revoke)
        self._touched.update(msg.after.touched)
        self._notify(force=kept is None)
        if self.leases is not None:
            self.leases.keep_only([(Step, kept.id)] if kept is not None else [])
        return kept, ran

    def run_execution(self, execution_id: str, *, retried: bool = False) -> None:
        self._handle(
            WorkKind.EXECUTION, execution_id, lambda m: run_execution(m, execution_id), retried
        )

    def run_sample(self, sample_id: str, *, retried: bool = False) -> None:
        self._handle(WorkKind.SAMPLE, sample_id, lambda m: run_sample(m, sample_id), retried)

    def message(self, retried: bool = False) -> Message:
        """A fresh context for one message (tests drive the wing's steps with it)."""
        return Message(
            db=self.db,
            tools=self.tools,
            settings=self.settings,
            worker=self.worker,
            holder_alive=self.holder_alive,
            leases=self.leases,
            graphs=self.graphs,
            metrics=self.metrics,
            retried=retried,
        )

    def _handle(self, kind: WorkKind, row_id: str, fn: Handler, retried: bool) -> Job | None:
        """Handle one message; return the successor step it claimed to run next, if any."""
        msg = self.message(retried)
        successor: Job | None = None
        try:
            successor = fn(msg)
            handoff.publish(self.dispatcher, msg.after.publish)
            handoff.revoke(self.dispatcher, msg.after.revoke)
            self._touched.update(msg.after.touched)
            self._notify(force=successor is None)
            return successor
        except Exception as exc:
            successor = None  # nothing runs next after a fault: the lease of it runs out
            if database_away(exc):
                # Let the task adapter retry the message; nothing was settled.
                raise DatabaseAway(f"database away: {type(exc).__name__}") from exc
            log.exception("orchestration fault", extra={"kind": str(kind), "id": row_id})
            try:
                handoff.revoke(self.dispatcher, safety_net(self.db, kind, row_id, exc))
            except Exception as again:
                if database_away(again):
                    raise DatabaseAway(f"database away: {type(again).__name__}") from again
                raise
            return None
        finally:
            if self.leases is not None:
                # Done with every row but the successor this process runs next: their
                # leases run out if this process left one unsettled.
                keep = [(Step, successor.id)] if successor is not None else []
                self.leases.keep_only(keep)

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
        handoff.notify(self.events, touched)
