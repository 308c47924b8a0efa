"""An in-process dispatcher: the engine end to end in one process, without a broker.

A test double that ships with the package (like dramatiq's ``StubBroker``): the
:class:`QueueDispatcher` keeps what a broker would deliver in a list, and :func:`drain`
plays the workers, handing each message to an :class:`~engine.worker.entry.Worker`
in FIFO, LIFO or shuffled order to vary the interleavings a real broker produces. It is
what the unit tests and the graph property test run workflows on; production uses
``workers.dispatch.CeleryDispatcher``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import Base, Organization, Run, Step, Turn
from engine.db.session import Database
from engine.execute import Toolbox
from engine.functions import FunctionRegistry
from engine.handoff import hand_off
from engine.ids import new_id
from engine.lineage import inherited, lineage_of, sees
from engine.ports import Metrics, NoMetrics, Work, WorkKind
from engine.providers.base import (
    ModelRequest,
    ModelResponse,
    Provider,
    ProviderConfig,
    ProviderError,
)
from engine.providers.factory import build_provider
from engine.run.start import start_run
from engine.settings import Settings
from engine.worker.entry import Worker
from engine.workflows import create_workflow

Order = Literal["fifo", "lifo", "shuffle"]


class QueueDispatcher:
    """The Dispatcher port as a list: what a broker would deliver, in publish order."""

    def __init__(self) -> None:
        self.queue: list[Work] = []
        self.published: list[Work] = []
        self.revoked: list[Work] = []
        # The broker is away: publishing and revoking raise, as the real client does.
        self.down = False

    def dispatch(self, work: Sequence[Work]) -> None:
        if self.down:
            raise BrokerDown("the broker is away")
        self.queue.extend(work)
        self.published.extend(work)

    def revoke(self, work: Sequence[Work]) -> None:
        if self.down:
            raise BrokerDown("the broker is away")
        self.revoked.extend(work)


@dataclass
class RecordingMetrics:
    """A :class:`~engine.ports.Metrics` that keeps every observation, for assertions."""

    queue_waits: list[tuple[str, str, float]] = field(default_factory=list)
    block_runs: list[tuple[str, str, float]] = field(default_factory=list)
    samples: list[tuple[str, str | None]] = field(default_factory=list)

    def observe_queue_wait(self, *, kind: str, block_type: str, seconds: float) -> None:
        self.queue_waits.append((kind, block_type, seconds))

    def observe_block_run(self, *, block_type: str, outcome: str, seconds: float) -> None:
        self.block_runs.append((block_type, outcome, seconds))

    def count_sample(self, *, block_type: str, failure: str | None) -> None:
        self.samples.append((block_type, failure))


class FailingSamples:
    """A provider whose calls for the given consensus sample indices fail (HTTP 503);
    every other call is answered by ``inner``."""

    name = "failing-samples"

    def __init__(self, inner: Provider, *, failing: frozenset[int]) -> None:
        self.inner = inner
        self.failing = failing

    def complete(self, request: ModelRequest) -> ModelResponse:
        if request.sample_index in self.failing:
            raise ProviderError("provider_http_error", "HTTP 503", retryable=False, status_code=503)
        return self.inner.complete(request)

    def close(self) -> None:
        self.inner.close()


class BrokerDown(ConnectionError):
    """Raised by a :class:`QueueDispatcher` that is ``down``."""


class ScriptedProvider:
    """The Provider port as a script: answers by ``request.sample_index`` (the consensus
    sample index, 0 for a single call); an exception in the script is raised."""

    name = "scripted"

    def __init__(self, answers: Sequence[Any] = ()) -> None:
        self.answers = list(answers)
        self.requests: list[ModelRequest] = []

    def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        answer = self.answers[request.sample_index]
        if isinstance(answer, Exception):
            raise answer
        return ModelResponse(
            data=answer,
            provider="scripted",
            model="script-1",
            prompt_tokens=10,
            completion_tokens=5,
            latency_ms=7,
        )

    def close(self) -> None:
        pass


class Runner(Protocol):
    """What a worker calls for each message kind (engine.worker.entry.Worker's)."""

    def run_step(self, step_id: str, *, retried: bool = False) -> None: ...

    def run_execution(self, execution_id: str, *, retried: bool = False) -> None: ...

    def run_sample(self, sample_id: str, *, retried: bool = False) -> None: ...


class QueueNeverDrains(AssertionError):
    """More messages were handled than the limit: something keeps publishing."""


def deliver(runner: Runner, work: Work) -> None:
    """Hand one message to a worker, as the Celery task of its kind does."""
    if work.kind == WorkKind.STEP:
        runner.run_step(work.id)
    elif work.kind == WorkKind.SAMPLE:
        runner.run_sample(work.id)
    else:
        runner.run_execution(work.id)


def drain(
    runner: Runner,
    dispatcher: QueueDispatcher,
    order: Order = "fifo",
    *,
    seed: int = 0,
    limit: int = 10_000,
) -> int:
    """Deliver queued messages until none is left; return how many were handled.

    Delays (a retry's backoff) are not waited for: the claim does not look at them.
    """
    rng = random.Random(seed)
    handled = 0
    queue = dispatcher.queue
    while queue:
        if order == "fifo":
            work = queue.pop(0)
        elif order == "lifo":
            work = queue.pop()
        else:
            work = queue.pop(rng.randrange(len(queue)))
        deliver(runner, work)
        handled += 1
        if handled >= limit:
            raise QueueNeverDrains(f"still {len(queue)} messages after handling {handled}")
    return handled


class InProcessEngine:
    """A whole engine in one process: a database, one organization, a worker (engine.worker) on a
    :class:`QueueDispatcher`. ``run_to_rest`` starts a run and drains its messages."""

    def __init__(
        self,
        settings: Settings,
        *,
        functions: FunctionRegistry | None = None,
        provider: Provider | None = None,
        worker: str = "in-process:1",
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.db = Database(settings)
        Base.metadata.create_all(self.db.engine)
        with self.db.transaction() as s:
            org = Organization(name="in-process")
            s.add(org)
            s.flush()
            self.org_id = org.id
        self.functions = functions or FunctionRegistry()
        self.provider = provider or build_provider(ProviderConfig.from_settings(settings))
        self.dispatcher = QueueDispatcher()
        self.worker = Worker(
            db=self.db,
            dispatcher=self.dispatcher,
            tools=Toolbox(functions=self.functions, provider=self.provider),
            settings=settings,
            worker=worker,
            holder_alive=lambda holder: None,
            metrics=metrics or NoMetrics(),
        )

    def workflow(self, graph: Mapping[str, Any], name: str = "wf") -> str:
        """Save a workflow as the API does (validation included); return its id."""
        with self.db.transaction() as s:
            wf = create_workflow(
                s, self.org_id, name=name, blocks=list(graph["blocks"]), edges=list(graph["edges"])
            )
            return wf.id

    def start(self, workflow_id: str, inputs: Mapping[str, Any]) -> str:
        """What the API does: commit the run, publish its first messages, mark them queued."""
        with self.db.transaction() as s:
            started = start_run(s, self.org_id, workflow_id=workflow_id, inputs=dict(inputs))
            run_id, work = started.run.id, started.work
        steps = [w.id for w in work if w.kind == WorkKind.STEP]
        hand_off(self.db, self.dispatcher, work, mark={Step: steps}, strict=True)
        return run_id

    def drain(self, order: Order = "fifo", *, seed: int = 0, limit: int = 10_000) -> int:
        return drain(self.worker, self.dispatcher, order, seed=seed, limit=limit)

    def run_to_rest(
        self,
        graph: Mapping[str, Any],
        inputs: Mapping[str, Any],
        order: Order = "fifo",
        seed: int = 0,
    ) -> str:
        run_id = self.start(self.workflow(graph), inputs)
        self.drain(order, seed=seed)
        return run_id

    def run(self, run_id: str) -> Run:
        with self.db.sessions() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise LookupError(run_id)
            return run

    def steps(self, run_id: str) -> dict[str, Step]:
        with self.db.sessions() as s:
            run = s.get(Run, run_id)
            seen = sees(Step, run_id, lineage_of(run) if run is not None else ())
            rows = s.scalars(select(Step).where(seen).order_by(Step.created_at))
            return {r.step_id: r for r in rows}

    def close(self) -> None:
        self.provider.close()
        self.db.close()


def copy_inherited(s: Session, run_id: str) -> int:
    """What a checkpoint fork did before lineages: copy the turns and steps the run inherits
    under its own id (fresh row ids) and drop its lineage; returns the steps copied.

    Kept only so that tests can compare a checkpoint run's reads with and without copying.
    """
    run = s.get(Run, run_id)
    if run is None:
        raise LookupError(run_id)
    lineage = lineage_of(run)
    copied = 0
    for model in (Turn, Step):
        columns = [c.key for c in model.__table__.columns if c.key not in ("id", "run_id")]
        for row in s.scalars(select(model).where(inherited(model, lineage))).all():
            values = {key: getattr(row, key) for key in columns}
            s.add(model(id=new_id(), run_id=run_id, **values))
            copied += model is Step
    run.lineage = None
    s.flush()
    return copied
