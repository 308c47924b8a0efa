"""The in-process engine the unit tests of the wings drive: SQLite rows, an in-memory
queue (engine.testing.QueueDispatcher), a scripted model provider, no broker.

Workers are played by ``drain()``, which hands messages to the :class:`Worker` in FIFO,
LIFO or shuffled order to vary the interleavings the real broker produces.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from engine.clock import utcnow
from engine.db.models import (
    Base,
    BlockExecution,
    Organization,
    Run,
    Step,
    Turn,
)
from engine.db.session import Database
from engine.execute import Toolbox
from engine.functions import FunctionRegistry
from engine.handoff import hand_off
from engine.ports import Work, WorkKind
from engine.run.start import start_run
from engine.settings import Settings
from engine.testing import Order, QueueDispatcher, ScriptedProvider, deliver, drain
from engine.worker.entry import Worker
from engine.workflows import create_workflow


def block(bid: str, btype: str, **config: Any) -> dict[str, Any]:
    return {"id": bid, "type": btype, "config": config}


def edge(source: str, sh: str, target: str, th: str) -> dict[str, str]:
    return {"source": source, "source_handle": sh, "target": target, "target_handle": th}


def start_block(*handles: str) -> dict[str, Any]:
    return block("start", "start", inputs={h: {"type": "json"} for h in handles})


def fn(bid: str, name: str, **config: Any) -> dict[str, Any]:
    return block(bid, "function", function=name, **config)


@dataclass(kw_only=True)
class Harness:
    db: Database
    settings: Settings
    dispatcher: QueueDispatcher
    functions: FunctionRegistry
    provider: ScriptedProvider
    orch: Worker
    org_id: str
    calls: Counter[str] = field(default_factory=Counter)

    # -- building ---------------------------------------------------------------------

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        def counted(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
            self.calls[name] += 1
            return fn(inputs, params)

        self.functions.register(name, counted)

    def orchestrator(self, worker: str, holder_alive: Callable[[str], bool | None]) -> Worker:
        return Worker(
            db=self.db,
            dispatcher=self.dispatcher,
            tools=self.orch.tools,
            settings=self.settings,
            worker=worker,
            holder_alive=holder_alive,
        )

    def workflow(
        self,
        blocks: list[dict[str, Any]],
        edges: list[dict[str, str]],
        settings: dict[str, Any] | None = None,
    ) -> str:
        with self.db.transaction() as s:
            wf = create_workflow(
                s, self.org_id, name="wf", blocks=blocks, edges=edges, settings=settings
            )
            return wf.id

    def start(self, workflow_id: str, inputs: dict[str, Any], *, publish: bool = True) -> str:
        """What the API does: commit the run, publish its first messages, mark them queued."""
        with self.db.transaction() as s:
            started = start_run(s, self.org_id, workflow_id=workflow_id, inputs=inputs)
            run_id, work = started.run.id, started.work
        if publish:
            self.publish(work)
        return run_id

    def publish(self, work: list[Work]) -> None:
        steps = [w.id for w in work if w.kind == WorkKind.STEP]
        hand_off(self.db, self.dispatcher, work, mark={Step: steps}, strict=True)

    # -- workers ------------------------------------------------------------------------

    def deliver(self, work: Work, orch: Worker | None = None) -> None:
        deliver(orch or self.orch, work)

    def drain(self, order: Order = "fifo", *, seed: int = 0, limit: int = 10_000) -> int:
        return drain(self.orch, self.dispatcher, order, seed=seed, limit=limit)

    # -- reading --------------------------------------------------------------------------

    def run(self, run_id: str) -> Run:
        with self.db.sessions() as s:
            run = s.get(Run, run_id)
            assert run is not None
            return run

    def steps(self, run_id: str) -> dict[str, Step]:
        with self.db.sessions() as s:
            rows = s.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.created_at))
            return {r.step_id: r for r in rows}

    def states(self, run_id: str) -> dict[str, str]:
        return {k: v.state for k, v in self.steps(run_id).items()}

    def output(self, run_id: str, turn: int = 0) -> Any:
        with self.db.sessions() as s:
            t = s.scalar(select(Turn).where(Turn.run_id == run_id, Turn.turn_index == turn))
            assert t is not None
            return t.output

    def assert_settled(self, run_id: str) -> Run:
        """A finished run: terminal, nothing left open, progress adds up."""
        run = self.run(run_id)
        assert run.status in {"completed", "failed", "cancelled", "aborted_looping_risk"}
        assert run.completed_at is not None
        open_steps = {
            k: v for k, v in self.states(run_id).items() if v in {"pending", "queued", "running"}
        }
        assert open_steps == {}
        assert run.steps_total == len(self.steps(run_id))
        assert run.steps_done == run.steps_total
        return run


ORDERS = ["fifo", "lifo", "shuffle"]


def new_harness(tmp_path: Path) -> Iterator[Harness]:
    # Successors go through the queue here, so the tests control the delivery order;
    # running them in-process is tested on its own below.
    settings = Settings(data_dir=str(tmp_path), inline_successors=0)
    db = Database(settings)
    Base.metadata.create_all(db.engine)
    with db.transaction() as s:
        org = Organization(name="acme")
        s.add(org)
        s.flush()
        org_id = org.id
    functions = FunctionRegistry()
    provider = ScriptedProvider()
    dispatcher = QueueDispatcher()
    orch = Worker(
        db=db,
        dispatcher=dispatcher,
        tools=Toolbox(functions=functions, provider=provider),
        settings=settings,
        worker="test-host:1",
        holder_alive=lambda holder: None,
    )
    harness = Harness(
        db=db,
        settings=settings,
        dispatcher=dispatcher,
        functions=functions,
        provider=provider,
        orch=orch,
        org_id=org_id,
    )
    harness.register("double", lambda i, p: i["value"] * 2)
    harness.register("inc", lambda i, p: i["value"] + 1)
    harness.register("add", lambda i, p: i["left"] + i["right"])
    harness.register("identity", lambda i, p: i.get("value"))

    def boom(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        raise ValueError("boom")

    harness.register("boom", boom)
    yield harness
    db.close()


def linear_graph() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    return (
        [start_block("doc"), fn("f", "double"), block("end", "end")],
        [edge("start", "doc", "f", "value"), edge("f", "output", "end", "result")],
    )


def diamond_graph() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    return (
        [
            start_block("n"),
            fn("a", "double"),
            fn("b", "inc"),
            fn("join", "add"),
            block("end", "end"),
        ],
        [
            edge("start", "n", "a", "value"),
            edge("start", "n", "b", "value"),
            edge("a", "output", "join", "left"),
            edge("b", "output", "join", "right"),
            edge("join", "output", "end", "sum"),
        ],
    )


def router_graph() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    return (
        [
            start_block("n"),
            block(
                "r",
                "router",
                routes=[{"handle": "big", "when": "input > 10"}],
                default="small",
            ),
            fn("big_a", "double"),
            fn("big_b", "double"),
            fn("small", "inc"),
            block("end", "end"),
        ],
        [
            edge("start", "n", "r", "input"),
            edge("r", "big", "big_a", "value"),
            edge("big_a", "output", "big_b", "value"),
            edge("big_b", "output", "end", "big"),
            edge("r", "small", "small", "value"),
            edge("small", "output", "end", "small"),
        ],
    )


def for_each_graph() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    return (
        [
            start_block("items"),
            block("pages", "for_each", body=["double"]),
            fn("double", "double"),
            block("end", "end"),
        ],
        [
            edge("start", "items", "pages", "items"),
            edge("pages", "item", "double", "value"),
            edge("pages", "results", "end", "results"),
        ],
    )


def loop_graph() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    return (
        [
            start_block("n"),
            block("r", "router", routes=[{"handle": "again", "when": "input < 3"}], default="done"),
            fn("inc", "inc"),
            block("end", "end"),
        ],
        [
            edge("start", "n", "r", "input"),
            edge("r", "again", "inc", "value"),
            edge("inc", "output", "r", "input"),
            edge("r", "done", "end", "result"),
        ],
    )


def backdate(h: Harness, run_id: str, hours: float = 1.0) -> None:
    with h.db.transaction() as s:
        s.execute(
            update(Run).where(Run.id == run_id).values(updated_at=utcnow() - timedelta(hours=hours))
        )


def start_execution(h: Harness, run_id: str, wf: str, **overrides: Any) -> str:
    values: dict[str, Any] = {
        "organization_id": h.org_id,
        "workflow_id": wf,
        "run_id": run_id,
        "block_id": "ex",
        "block_type": "extract",
        "block_config": {"schema": {"type": "object"}},
        "inputs": {"document": {"type": "json", "data": "d"}},
        "state": "queued",
        "n_consensus": 3,
    }
    values.update(overrides)
    with h.db.transaction() as s:
        ex = BlockExecution(**values)
        s.add(ex)
        s.flush()
        return ex.id


class Died(BaseException):
    """The process running the block is killed (not an exception the engine could catch)."""
