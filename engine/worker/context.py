"""What one message carries down the worker wing, and the values the wing passes back."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import defer

from engine.blocks.registry import kind_of
from engine.claims import HolderCheck
from engine.clock import as_utc
from engine.db.models import BlockExecution, Run
from engine.db.session import Database
from engine.execute import BlockFailed, Outcome, Toolbox, unwrap, wrap
from engine.graph.cache import max_visits, run_graph
from engine.graph.model import Block, Graph
from engine.leases import LeaseKeeper
from engine.ports import Metrics, NoMetrics, Work, WorkKind
from engine.settings import Settings


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
    """A claimed step or execution: everything the execution needs, read by the claim."""

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


@dataclass(frozen=True, kw_only=True)
class Settled:
    """What a committed settle leaves to do: publish, revoke, run a claimed successor."""

    publish: tuple[Work, ...] = ()
    revoke: tuple[Work, ...] = ()
    touched: tuple[str, ...] = ()
    successor: Job | None = None


@dataclass(kw_only=True)
class AfterCommit:
    """Collected while one message is handled; handed over once its work has committed."""

    publish: list[Work] = field(default_factory=list)
    revoke: list[Work] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)

    def take(self, settled: Settled) -> Job | None:
        self.publish.extend(settled.publish)
        self.revoke.extend(settled.revoke)
        self.touched.update(settled.touched)
        return settled.successor


class RunGraphs:
    """A run's graph by run id: the run's row is read without its config on the hot path
    (LIGHT_RUN), so the config is loaded (and its digest taken) once per run here."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._graphs: OrderedDict[str, Graph] = OrderedDict()
        self._max_visits: dict[str, int] = {}

    def graph(self, run: Run) -> Graph:
        graph = self._graphs.get(run.id)
        if graph is None:
            graph = run_graph(run.config)
            self._graphs[run.id] = graph
            self._max_visits[run.id] = max_visits(run.config)
            if len(self._graphs) > self._size:
                evicted, _ = self._graphs.popitem(last=False)
                self._max_visits.pop(evicted, None)
        return graph

    def max_visits(self, run: Run) -> int:
        self.graph(run)
        return self._max_visits[run.id]


@dataclass(frozen=True, kw_only=True)
class Message:
    """One message being handled: the process's parts, and what to do after its commit."""

    db: Database
    tools: Toolbox
    settings: Settings
    worker: str
    holder_alive: HolderCheck
    leases: LeaseKeeper | None
    graphs: RunGraphs
    metrics: Metrics = field(default_factory=NoMetrics)
    # This message is the task adapter's retry after our own attempt raised (the database
    # went away mid-way). That attempt is over, so a row it left running is taken over
    # even though the process that claimed it is still alive.
    retried: bool = False
    after: AfterCommit = field(default_factory=AfterCommit)

    def holder_check(self, holder: str) -> bool | None:
        return False if self.retried else self.holder_alive(holder)


# A run read on the hot path without its big columns: the graph is parsed once per
# process (RunGraphs), and the others load only if used.
LIGHT_RUN = (defer(Run.config), defer(Run.metadata_), defer(Run.evaluation), defer(Run.usage))


def step_job(step: Any, run: Run, block: Block, *, n_consensus: int) -> Job:
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


def execution_job(ex: BlockExecution) -> Job:
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


def duration_ms(job: Job, now: datetime) -> int | None:
    start = as_utc(job.started_at)
    return None if start is None else max(0, int((now - start).total_seconds() * 1000))


def completed_values(job: Job, result: Outcome, duration: int | None) -> dict[str, Any]:
    """The columns a completed step or execution stores (the same for both)."""
    passes = kind_of(job.block.type).passes_inputs
    return {
        "outputs": job.raw_inputs if passes else wrap(result.outputs),
        "active_output_handles": list(result.active),
        "duration_ms": duration,
        "consensus": result.consensus,
    }
