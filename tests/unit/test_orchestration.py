"""The engine end to end in one process: SQLite rows, an in-memory queue, no broker.

Workers are played by a ``drain()`` loop that pops messages and hands them to the
:class:`Worker` (FIFO, LIFO or shuffled, to vary the interleavings the real
broker produces). Functions and a scripted model provider stand in for user code and
models. The Celery and PostgreSQL paths are covered by the integration tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from engine.claims import claim
from engine.clock import utcnow
from engine.db.models import (
    Base,
    BlockExecution,
    ConsensusSample,
    ModelCall,
    Organization,
    Run,
    Step,
    Turn,
)
from engine.db.session import Database
from engine.execute import Toolbox, unwrap
from engine.functions import FunctionRegistry
from engine.handoff import hand_off
from engine.lifecycle import StepState
from engine.outbox import sweep
from engine.ports import Work, WorkKind
from engine.providers.base import ModelRequest, ModelResponse, ProviderError
from engine.reaper import reap
from engine.run.control import cancel_run, pause_run, resume_run
from engine.run.scheduler import Scheduler
from engine.run.start import start_run
from engine.settings import Settings
from engine.testing import Order, QueueDispatcher, deliver, drain
from engine.worker import samples
from engine.worker.context import FanOut, FanOutConsensus
from engine.worker.entry import Worker
from engine.worker.steps import claim_step, settle_step
from engine.workflows import create_workflow

# -- test doubles ---------------------------------------------------------------------------


class ScriptedProvider:
    """Answers by ``request.sample_index``: the consensus sample index (0 for a single call)."""

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


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    yield from new_harness(tmp_path)


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


# -- scenarios ---------------------------------------------------------------------------------


def linear_graph() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    return (
        [start_block("doc"), fn("f", "double"), block("end", "end")],
        [edge("start", "doc", "f", "value"), edge("f", "output", "end", "result")],
    )


def test_linear_chain_completes(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 21})
    assert h.run(run_id).status == "not_started"
    assert h.states(run_id) == {"start": "queued"}
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    assert run.termination_reason is None
    assert run.error is None
    assert (run.steps_total, run.steps_done) == (3, 3)
    assert h.output(run_id) == {"result": 42}
    steps = h.steps(run_id)
    assert list(steps) == ["start", "f", "end"]
    assert all(s.state == "completed" for s in steps.values())
    f = steps["f"]
    assert f.inputs == {"value": {"type": "json", "data": 21}}
    assert f.outputs == {"output": {"type": "json", "data": 42}}
    assert f.active_output_handles == ["output"]
    assert f.attempt == 1
    assert f.worker == "test-host:1"
    assert f.duration_ms is not None and f.duration_ms >= 0
    assert steps["start"].outputs == {"doc": {"type": "json", "data": 21}}
    assert h.calls["double"] == 1
    with h.db.sessions() as s:
        turn = s.scalar(select(Turn).where(Turn.run_id == run_id))
        assert turn is not None and turn.completed_at is not None


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


@pytest.mark.parametrize("order", ORDERS)
def test_diamond_join_runs_once_with_both_inputs(h: Harness, order: str) -> None:
    wf = h.workflow(*diamond_graph())
    run_id = h.start(wf, {"n": 5})
    h.drain(order, seed=7)
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    steps = h.steps(run_id)
    assert sorted(steps) == ["a", "b", "end", "join", "start"]
    assert steps["join"].inputs == {
        "left": {"type": "json", "data": 10},
        "right": {"type": "json", "data": 6},
    }
    assert h.calls["add"] == 1
    assert h.output(run_id) == {"sum": 16}
    assert run.steps_total == run.steps_done == 5


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


@pytest.mark.parametrize("order", ORDERS)
def test_router_skips_the_inactive_branch(h: Harness, order: str) -> None:
    wf = h.workflow(*router_graph())
    run_id = h.start(wf, {"n": 5})
    h.drain(order, seed=3)
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    steps = h.steps(run_id)
    assert steps["r"].active_output_handles == ["small"]
    assert steps["r"].outputs == {"small": {"type": "json", "data": 5}}
    # The skip propagates down the whole inactive branch.
    for sid in ("big_a", "big_b"):
        assert steps[sid].state == "skipped"
        assert steps[sid].reason == "inactive_inputs"
        assert steps[sid].completed_at is not None
    assert steps["small"].state == "completed"
    assert steps["end"].state == "completed"
    assert steps["end"].inputs == {"small": {"type": "json", "data": 6}}
    assert h.output(run_id) == {"small": 6}
    assert h.calls["double"] == 0
    assert run.steps_total == run.steps_done == 6


def test_router_takes_the_other_branch(h: Harness) -> None:
    wf = h.workflow(*router_graph())
    run_id = h.start(wf, {"n": 11})
    h.drain()
    h.assert_settled(run_id)
    assert h.states(run_id)["small"] == "skipped"
    assert h.output(run_id) == {"big": 44}


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


@pytest.mark.parametrize("order", ORDERS)
def test_for_each_over_twenty_items(h: Harness, order: str) -> None:
    wf = h.workflow(*for_each_graph())
    items = list(range(20))
    run_id = h.start(wf, {"items": items})
    h.drain(order, seed=11)
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    steps = h.steps(run_id)
    iteration_ids = [f"pages[{i}]/double" for i in range(20)]
    assert set(steps) == {"start", "pages", "end", *iteration_ids}
    third = steps["pages[3]/double"]
    assert third.scope == "pages[3]"
    assert third.inputs == {"value": {"type": "json", "data": 3}}
    assert third.outputs == {"output": {"type": "json", "data": 6}}
    assert steps["pages"].state == "completed"
    assert steps["pages"].open_children == 0
    expected = [2 * i for i in items]
    assert unwrap(steps["pages"].outputs) == {"results": expected}
    assert h.output(run_id) == {"results": expected}
    assert h.calls["double"] == 20
    assert run.steps_total == run.steps_done == 23


def test_for_each_with_two_body_blocks_and_no_items(h: Harness) -> None:
    blocks = [
        start_block("items"),
        block("pages", "for_each", body=["double", "inc"]),
        fn("double", "double"),
        fn("inc", "inc"),
        block("end", "end"),
    ]
    edges = [
        edge("start", "items", "pages", "items"),
        edge("pages", "item", "double", "value"),
        edge("double", "output", "inc", "value"),
        edge("pages", "results", "end", "results"),
    ]
    wf = h.workflow(blocks, edges)
    run_id = h.start(wf, {"items": [1, 2, 3]})
    h.drain("lifo")
    h.assert_settled(run_id)
    assert h.output(run_id) == {"results": [3, 5, 7]}  # gathered from the body's last block
    assert "pages[2]/inc" in h.steps(run_id)
    empty = h.start(wf, {"items": []})
    h.drain()
    run = h.assert_settled(empty)
    assert run.status == "completed"
    assert h.output(empty) == {"results": []}


def test_failing_block_fails_the_run_and_closes_the_rest(h: Harness) -> None:
    blocks = [
        start_block("n"),
        fn("bad", "boom"),
        fn("ok1", "inc"),
        fn("ok2", "inc"),
        block("end", "end"),
    ]
    edges = [
        edge("start", "n", "bad", "value"),
        edge("start", "n", "ok1", "value"),
        edge("start", "n", "ok2", "value"),
        edge("ok1", "output", "end", "a"),
        edge("ok2", "output", "end", "b"),
    ]
    wf = h.workflow(blocks, edges)
    run_id = h.start(wf, {"n": 1})
    h.drain("fifo")
    run = h.assert_settled(run_id)
    assert run.status == "failed"
    assert run.termination_reason == "execution_error"
    steps = h.steps(run_id)
    assert run.error == {
        "step_id": steps["bad"].id,
        "block_id": "bad",
        "type": "ValueError",
        "message": "boom",
    }
    assert steps["bad"].state == "error"
    assert (steps["bad"].error_type, steps["bad"].error_message) == ("ValueError", "boom")
    for sid in ("ok1", "ok2"):
        assert steps[sid].state == "skipped"
        assert steps[sid].reason == "run_failed"
    assert "end" not in steps
    assert h.calls["inc"] == 0  # the messages for ok1/ok2 arrived after the end
    assert h.output(run_id) is None


def test_failure_cancels_a_running_sibling_and_discards_its_result(h: Harness) -> None:
    other = h.orchestrator("test-host:2", lambda holder: None)
    run_ids: list[str] = []

    def slow(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        # While this step runs, another worker runs the failing sibling.
        with h.db.sessions() as s:
            bad = s.scalar(select(Step.id).where(Step.run_id == run_ids[0], Step.block_id == "bad"))
        assert bad is not None
        other.run_step(bad)
        return "late"

    h.register("slow", slow)
    blocks = [start_block("n"), fn("bad", "boom"), fn("slow", "slow"), block("end", "end")]
    edges = [
        edge("start", "n", "bad", "value"),
        edge("start", "n", "slow", "value"),
        edge("slow", "output", "end", "x"),
    ]
    wf = h.workflow(blocks, edges)
    run_ids.append(h.start(wf, {"n": 1}))
    h.deliver(h.dispatcher.queue.pop(0))  # start
    slow_work = next(w for w in h.dispatcher.queue if w.id == h.steps(run_ids[0])["slow"].id)
    h.dispatcher.queue.remove(slow_work)
    h.deliver(slow_work)
    h.drain()
    run = h.assert_settled(run_ids[0])
    assert run.status == "failed"
    assert run.termination_reason == "execution_error"
    steps = h.steps(run_ids[0])
    assert steps["slow"].state == "cancelled"
    assert steps["slow"].reason == "run_failed"
    assert steps["slow"].outputs is None
    assert "end" not in steps
    assert [w.id for w in h.dispatcher.revoked] == [steps["slow"].id]


@pytest.mark.parametrize("order", ["fifo", "lifo"])
def test_consensus_of_five_disagreeing_answers(h: Harness, order: str) -> None:
    h.provider.answers = [
        {"total": 10, "vendor": "ACME"},
        {"total": 99, "vendor": "ACME"},
        {"total": 10, "vendor": "ACME"},
        {"total": 99, "vendor": "ACME"},
        {"total": 10, "vendor": "ACME"},
    ]
    schema = {
        "type": "object",
        "properties": {"total": {"type": "number"}, "vendor": {"type": "string"}},
    }
    blocks = [
        start_block("doc"),
        block("ex", "extract", schema=schema, n_consensus=5, instructions="read it"),
        block("end", "end"),
    ]
    edges = [edge("start", "doc", "ex", "document"), edge("ex", "output", "end", "data")]
    wf = h.workflow(blocks, edges)
    run_id = h.start(wf, {"doc": "invoice text"})
    h.drain(order)
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    ex = h.steps(run_id)["ex"]
    assert ex.state == "completed"
    assert ex.n_consensus == 5
    assert ex.consensus is not None
    assert ex.consensus["likelihoods"] == {"total": pytest.approx(0.6), "vendor": 1.0}
    assert ex.consensus["attempts"] == 5
    assert ex.consensus["succeeded"] == 5
    value = unwrap(ex.outputs)["output"]
    assert value == {"total": pytest.approx(10), "vendor": "ACME"}
    assert h.output(run_id) == {"data": value}
    assert sorted(r.sample_index for r in h.provider.requests) == [0, 1, 2, 3, 4]
    assert all(r.document == "invoice text" for r in h.provider.requests)
    with h.db.sessions() as s:
        calls = s.scalars(select(ModelCall).where(ModelCall.run_id == run_id)).all()
        attempts = s.scalars(select(ConsensusSample).where(ConsensusSample.owner_id == ex.id)).all()
    assert len(calls) == 5
    assert {c.step_id for c in calls} == {ex.id}
    assert sum(c.prompt_tokens for c in calls) == 50
    assert sorted(a.index for a in attempts) == [0, 1, 2, 3, 4]
    assert all(a.state == "completed" for a in attempts)
    assert run.steps_total == run.steps_done == 3


def test_consensus_with_failed_attempts(h: Harness) -> None:
    err = ProviderError("provider_timeout", "slow", retryable=True)
    h.provider.answers = [{"category": "a"}, err, {"category": "b"}, {"category": "a"}, err]
    blocks = [
        start_block("doc"),
        block("cls", "classifier", categories=["a", "b"], n_consensus=5),
        block("end", "end"),
    ]
    edges = [
        edge("start", "doc", "cls", "document"),
        edge("cls", "a", "end", "a"),
        edge("cls", "b", "end", "b"),
    ]
    wf = h.workflow(blocks, edges)
    run_id = h.start(wf, {"doc": "x"})
    h.drain()
    h.assert_settled(run_id)
    cls = h.steps(run_id)["cls"]
    assert cls.active_output_handles == ["a"]
    assert cls.consensus is not None
    assert cls.consensus["succeeded"] == 3
    assert h.output(run_id) == {"a": "x"}
    with h.db.sessions() as s:
        states = Counter(
            s.scalars(select(ConsensusSample.state).where(ConsensusSample.owner_id == cls.id)).all()
        )
        n_calls = len(s.scalars(select(ModelCall.id).where(ModelCall.run_id == run_id)).all())
    assert states == {"completed": 3, "error": 2}
    assert n_calls == 3


def test_consensus_where_every_attempt_fails_fails_the_run(h: Harness) -> None:
    err = ProviderError("provider_unavailable", "down", retryable=False)
    h.provider.answers = [err, err, err]
    blocks = [
        start_block("doc"),
        block("ex", "extract", schema={"type": "object"}, n_consensus=3),
        block("end", "end"),
    ]
    edges = [edge("start", "doc", "ex", "document"), edge("ex", "output", "end", "x")]
    run_id = h.start(h.workflow(blocks, edges), {"doc": "x"})
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "failed"
    assert run.termination_reason == "execution_error"
    assert h.steps(run_id)["ex"].error_type == "consensus_failed"


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


@pytest.mark.parametrize("order", ORDERS)
def test_router_loop_runs_until_done(h: Harness, order: str) -> None:
    wf = h.workflow(*loop_graph())
    run_id = h.start(wf, {"n": 0})
    h.drain(order)
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    steps = h.steps(run_id)
    assert set(steps) == {"start", "r", "r~2", "r~3", "r~4", "inc", "inc~2", "inc~3", "end"}
    assert steps["r~4"].visit == 4
    assert steps["r~4"].active_output_handles == ["done"]
    assert h.output(run_id) == {"result": 3}


def test_loop_over_max_block_visits_aborts(h: Harness) -> None:
    wf = h.workflow(*loop_graph(), settings={"max_block_visits": 3})
    run_id = h.start(wf, {"n": -100})
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "aborted_looping_risk"
    assert run.termination_reason == "looping_risk"
    assert run.error is not None and run.error["type"] == "looping_risk"
    assert "'r'" in run.error["message"]
    steps = h.steps(run_id)
    assert set(steps) == {"start", "r", "r~2", "r~3", "inc", "inc~2", "inc~3"}
    assert h.calls["inc"] == 3
    assert "end" not in steps


def test_duplicate_delivery_executes_once(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 1})
    h.dispatcher.queue.extend(list(h.dispatcher.queue))  # the start message twice
    h.deliver(h.dispatcher.queue.pop(0))
    f_work = [w for w in h.dispatcher.queue if w.id == h.steps(run_id)["f"].id]
    h.dispatcher.queue.extend(f_work * 2)  # and f three times
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    assert h.calls["double"] == 1
    assert len(h.steps(run_id)) == 3
    assert h.steps(run_id)["f"].attempt == 1
    assert h.output(run_id) == {"result": 2}


def test_duplicate_delivered_while_running_is_dropped(h: Harness) -> None:
    other = h.orchestrator("test-host:2", lambda holder: None)  # holder unknown, lease fresh
    run_ids: list[str] = []

    def reentrant(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        with h.db.sessions() as s:
            sid = s.scalar(select(Step.id).where(Step.run_id == run_ids[0], Step.block_id == "f"))
        assert sid is not None
        other.run_step(sid)  # a redelivered copy reaches another worker meanwhile
        return "once"

    h.register("reentrant", reentrant)
    blocks = [start_block("doc"), fn("f", "reentrant"), block("end", "end")]
    edges = [edge("start", "doc", "f", "value"), edge("f", "output", "end", "result")]
    run_ids.append(h.start(h.workflow(blocks, edges), {"doc": 1}))
    h.drain()
    h.assert_settled(run_ids[0])
    assert h.calls["reentrant"] == 1
    f = h.steps(run_ids[0])["f"]
    assert (f.attempt, f.worker) == (1, "test-host:1")
    assert h.output(run_ids[0]) == {"result": "once"}


def test_takeover_from_a_dead_holder_fences_the_old_attempt(h: Harness) -> None:
    other = h.orchestrator("test-host:2", lambda holder: False)  # the holder is dead
    run_ids: list[str] = []

    def twice(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        if h.calls["twice"] == 1:
            with h.db.sessions() as s:
                sid = s.scalar(
                    select(Step.id).where(Step.run_id == run_ids[0], Step.block_id == "f")
                )
            assert sid is not None
            other.run_step(sid)  # the first holder is declared dead: taken over
            return "first"
        return "second"

    h.register("twice", twice)
    blocks = [start_block("doc"), fn("f", "twice"), block("end", "end")]
    edges = [edge("start", "doc", "f", "value"), edge("f", "output", "end", "result")]
    run_ids.append(h.start(h.workflow(blocks, edges), {"doc": 1}))
    h.drain()
    run = h.assert_settled(run_ids[0])
    assert run.status == "completed"
    assert h.calls["twice"] == 2
    f = h.steps(run_ids[0])["f"]
    assert (f.attempt, f.worker) == (2, "test-host:2")
    assert unwrap(f.outputs) == {"output": "second"}
    assert h.output(run_ids[0]) == {"result": "second"}  # the stale "first" was discarded
    assert sum(1 for k in h.steps(run_ids[0]) if k.startswith("end")) == 1


def test_late_completion_after_cancel_is_discarded(h: Harness) -> None:
    run_ids: list[str] = []
    revoked: list[Work] = []

    def cancels(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        with h.db.transaction() as s:
            run, revoke = cancel_run(s, h.org_id, run_ids[0])
            assert run.status == "cancelled"
            revoked.extend(revoke)
        return "too late"

    h.register("cancels", cancels)
    blocks = [start_block("doc"), fn("f", "cancels"), fn("g", "double"), block("end", "end")]
    edges = [
        edge("start", "doc", "f", "value"),
        edge("f", "output", "g", "value"),
        edge("g", "output", "end", "result"),
    ]
    run_ids.append(h.start(h.workflow(blocks, edges), {"doc": 1}))
    h.drain()
    run = h.assert_settled(run_ids[0])
    assert run.status == "cancelled"
    assert run.termination_reason == "cancelled"
    steps = h.steps(run_ids[0])
    assert set(steps) == {"start", "f"}
    assert steps["f"].state == "cancelled"
    assert steps["f"].reason == "run_cancelled"
    assert steps["f"].outputs is None
    assert [w.id for w in revoked] == [steps["f"].id]
    assert h.calls["double"] == 0
    assert (run.steps_total, run.steps_done) == (2, 2)


def test_cancel_closes_queued_steps_and_their_messages_are_dropped(h: Harness) -> None:
    wf = h.workflow(*diamond_graph())
    run_id = h.start(wf, {"n": 1})
    h.deliver(h.dispatcher.queue.pop(0))  # start: a and b are queued
    with h.db.transaction() as s:
        _, revoke = cancel_run(s, h.org_id, run_id)
    assert revoke == []
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "cancelled"
    assert h.states(run_id) == {
        "start": "completed",
        "a": "cancelled",
        "b": "cancelled",
    }
    assert h.calls["double"] == h.calls["inc"] == 0


def test_steps_created_while_paused_wait_until_resume(h: Harness) -> None:
    run_ids: list[str] = []

    def pauses(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        with h.db.transaction() as s:
            assert pause_run(s, h.org_id, run_ids[0]).status == "paused"
        return inputs["value"]

    h.register("pauses", pauses)
    blocks = [start_block("doc"), fn("f", "pauses"), fn("g", "double"), block("end", "end")]
    edges = [
        edge("start", "doc", "f", "value"),
        edge("f", "output", "g", "value"),
        edge("g", "output", "end", "result"),
    ]
    run_ids.append(h.start(h.workflow(blocks, edges), {"doc": 4}))
    h.drain()
    run = h.run(run_ids[0])
    assert run.status == "paused"
    assert h.states(run_ids[0]) == {"start": "completed", "f": "completed", "g": "pending"}
    assert h.calls["double"] == 0
    # The outbox leaves a paused run alone.
    assert sweep(h.db, h.dispatcher, older_than_s=0) == 0
    with h.db.transaction() as s:
        resumed, work = resume_run(s, h.org_id, run_ids[0])
        assert resumed.status == "running"
    g_id = h.steps(run_ids[0])["g"].id
    assert work == [Work(kind=WorkKind.STEP, id=g_id)]
    h.publish(work)
    h.drain()
    run = h.assert_settled(run_ids[0])
    assert run.status == "completed"
    assert h.output(run_ids[0]) == {"result": 8}


def test_pause_before_start_hands_the_step_back(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 3})
    with h.db.transaction() as s:
        pause_run(s, h.org_id, run_id)
    h.drain()
    assert h.run(run_id).status == "paused"
    start = h.steps(run_id)["start"]
    assert start.state == "queued"
    with h.db.transaction() as s:
        _, work = resume_run(s, h.org_id, run_id)
    assert work == [Work(kind=WorkKind.STEP, id=start.id)]
    h.publish(work)
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    assert h.output(run_id) == {"result": 6}


def test_resume_after_the_last_step_settled_while_paused_completes(h: Harness) -> None:
    run_ids: list[str] = []

    def pauses(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        with h.db.transaction() as s:
            pause_run(s, h.org_id, run_ids[0])
        return "done"

    h.register("pauses", pauses)
    # The paused step is the last one: nothing is left for a later settlement to close.
    wf = h.workflow([start_block("doc"), fn("f", "pauses")], [edge("start", "doc", "f", "value")])
    run_ids.append(h.start(wf, {"doc": 1}))
    h.drain()
    assert h.run(run_ids[0]).status == "paused"
    assert h.states(run_ids[0]) == {"start": "completed", "f": "completed"}
    with h.db.transaction() as s:
        resumed, work = resume_run(s, h.org_id, run_ids[0])
    assert work == []
    assert resumed.status == "completed"
    run = h.assert_settled(run_ids[0])
    assert run.status == "completed"
    assert run.termination_reason is None


def test_pause_and_resume_refuse_the_wrong_status(h: Harness) -> None:
    from engine.errors import Conflict

    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 1})
    with h.db.transaction() as s, pytest.raises(Conflict):
        resume_run(s, h.org_id, run_id)
    h.drain()
    with h.db.transaction() as s, pytest.raises(Conflict):
        pause_run(s, h.org_id, run_id)
    with h.db.transaction() as s, pytest.raises(Conflict):
        cancel_run(s, h.org_id, run_id)
    assert h.run(run_id).status == "completed"


def test_outbox_republishes_a_lost_message(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 5}, publish=False)  # the API died before publishing
    start_id = h.steps(run_id)["start"].id
    assert h.steps(run_id)["start"].state == "pending"
    assert sweep(h.db, h.dispatcher, older_than_s=3600) == 0  # too young to be lost
    assert h.dispatcher.queue == []
    assert sweep(h.db, h.dispatcher, older_than_s=0) == 1
    assert h.dispatcher.queue == [Work(kind=WorkKind.STEP, id=start_id)]
    start = h.steps(run_id)["start"]
    assert start.state == "queued"
    assert start.queued_at is not None
    h.drain()
    assert h.assert_settled(run_id).status == "completed"
    assert h.output(run_id) == {"result": 10}
    assert sweep(h.db, h.dispatcher, older_than_s=0) == 0  # nothing open any more


def test_outbox_republishes_queued_rows_and_restarts_their_clock(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 5})
    h.dispatcher.queue.clear()  # the broker lost the message after it was marked queued
    old = utcnow() - timedelta(hours=1)
    with h.db.transaction() as s:
        s.execute(update(Step).where(Step.run_id == run_id).values(queued_at=old))
    assert sweep(h.db, h.dispatcher, older_than_s=60) == 1
    start = h.steps(run_id)["start"]
    assert start.state == "queued"
    assert start.queued_at is not None and start.queued_at.replace(tzinfo=None) > old.replace(
        tzinfo=None
    )
    assert sweep(h.db, h.dispatcher, older_than_s=60) == 0  # the clock restarted
    h.drain()
    assert h.assert_settled(run_id).status == "completed"


def _backdate(h: Harness, run_id: str, hours: float = 1.0) -> None:
    with h.db.transaction() as s:
        s.execute(
            update(Run).where(Run.id == run_id).values(updated_at=utcnow() - timedelta(hours=hours))
        )


def test_reaper_fails_a_stale_run_but_not_a_paused_one(h: Harness) -> None:
    wf = h.workflow(*diamond_graph(), settings={"stale_after_s": 5})
    stale = h.start(wf, {"n": 1})
    paused = h.start(wf, {"n": 1})
    fresh = h.start(wf, {"n": 1})
    # Every run's start step runs; then the workers go quiet.
    for _ in range(3):
        h.deliver(h.dispatcher.queue.pop(0))
    h.dispatcher.queue.clear()
    with h.db.transaction() as s:
        pause_run(s, h.org_id, paused)
    # One step of the stale run is stuck "running" on a worker that vanished.
    a_id = h.steps(stale)["a"].id
    with h.db.transaction() as s:
        assert (
            claim(
                s,
                Step,
                a_id,
                worker="ghost:9",
                holder_alive=lambda x: None,
                lease=timedelta(hours=1),
            )
            is not None
        )
    _backdate(h, stale)
    _backdate(h, paused)
    assert reap(h.db, h.dispatcher, default_after_s=3600) == 1
    run = h.assert_settled(stale)
    assert run.status == "failed"
    assert run.termination_reason == "stale_run_reaper"
    assert run.error is not None and run.error["type"] == "stale_run"
    assert h.states(stale) == {"start": "completed", "a": "cancelled", "b": "skipped"}
    assert [w.id for w in h.dispatcher.revoked] == [a_id]
    assert h.run(paused).status == "paused"
    assert h.run(fresh).status == "running"
    # A second reaper pass finds nothing more to do.
    assert reap(h.db, h.dispatcher, default_after_s=3600) == 0


def test_reaper_uses_the_default_limit_without_a_setting(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 1})
    h.deliver(h.dispatcher.queue.pop(0))
    _backdate(h, run_id, hours=0.5)
    assert reap(h.db, h.dispatcher, default_after_s=3600) == 0
    assert h.run(run_id).status == "running"
    assert reap(h.db, h.dispatcher, default_after_s=600) == 1
    assert h.run(run_id).status == "failed"


def test_finally_safety_net_fails_the_run(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(self: Scheduler, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("scheduler exploded")

    monkeypatch.setattr(Scheduler, "step_resolved", explode)
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 1})
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "failed"
    assert run.termination_reason == "finally_safety_net"
    assert run.error == {"type": "RuntimeError", "message": "scheduler exploded"}
    start = h.steps(run_id)["start"]
    assert start.state == "cancelled"
    assert start.reason == "run_failed"
    assert start.outputs is None  # the faulty settlement was rolled back


def test_safety_net_for_a_consensus_sample(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h.provider.answers = [{"x": 1}] * 3
    blocks = [
        start_block("doc"),
        block("ex", "extract", schema={"type": "object"}, n_consensus=3),
        block("end", "end"),
    ]
    edges = [edge("start", "doc", "ex", "document"), edge("ex", "output", "end", "x")]
    run_id = h.start(h.workflow(blocks, edges), {"doc": "d"})
    h.deliver(h.dispatcher.queue.pop(0))  # start
    h.deliver(h.dispatcher.queue.pop(0))  # ex: fans out three attempts

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("reconcile exploded")

    monkeypatch.setattr(samples, "_reconcile", explode)
    h.drain()
    run = h.assert_settled(run_id)
    assert (run.status, run.termination_reason) == ("failed", "finally_safety_net")


# -- claims and fencing -------------------------------------------------------------------------


def test_a_row_waiting_on_its_children_is_never_taken_over(h: Harness) -> None:
    wf = h.workflow(*for_each_graph())
    run_id = h.start(wf, {"items": [1, 2]})
    h.deliver(h.dispatcher.queue.pop(0))  # start
    h.deliver(h.dispatcher.queue.pop(0))  # pages: fans out, stays running with 2 children
    pages = h.steps(run_id)["pages"]
    assert (pages.state, pages.open_children) == ("running", 2)
    later = utcnow() + timedelta(days=1)  # the lease ran out long ago
    with h.db.transaction() as s:
        taken = claim(
            s,
            Step,
            pages.id,
            worker="w:2",
            holder_alive=lambda x: False,
            lease=timedelta(seconds=1),
            now=later,
        )
    assert taken is None
    # A redelivered message for it changes nothing either.
    h.orch.run_step(pages.id)
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    assert h.output(run_id) == {"results": [2, 4]}
    assert h.steps(run_id)["pages"].attempt == 1


def test_a_stale_fan_out_creates_nothing(h: Harness) -> None:
    wf = h.workflow(*for_each_graph())
    run_id = h.start(wf, {"items": [1, 2]})
    h.deliver(h.dispatcher.queue.pop(0))  # start
    pages_id = h.steps(run_id)["pages"].id
    job = claim_step(h.orch.message(), pages_id)
    assert job is not None
    # Meanwhile the row was taken over by another attempt.
    with h.db.transaction() as s:
        s.execute(update(Step).where(Step.id == pages_id).values(attempt=job.attempt + 1))
    settle_step(h.orch.message(), job, FanOut(items=[1, 2]), claim_next=False)
    assert set(h.steps(run_id)) == {"start", "pages"}
    assert h.steps(run_id)["pages"].open_children == 0


# -- block executions -----------------------------------------------------------------------------


def test_block_execution_runs_alone(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 2})
    h.drain()
    h.provider.answers = [{"v": 1}, {"v": 1}, {"v": 2}]
    with h.db.transaction() as s:
        plain = BlockExecution(
            organization_id=h.org_id,
            workflow_id=wf,
            run_id=run_id,
            block_id="f",
            block_type="function",
            block_config={"function": "double"},
            inputs={"value": {"type": "json", "data": 7}},
            state="queued",
        )
        voted = BlockExecution(
            organization_id=h.org_id,
            workflow_id=wf,
            run_id=run_id,
            block_id="ex",
            block_type="extract",
            block_config={"schema": {"type": "object"}},
            inputs={"document": {"type": "json", "data": "d"}},
            state="queued",
            n_consensus=3,
        )
        s.add_all([plain, voted])
        s.flush()
        ids = (plain.id, voted.id)
    h.dispatcher.dispatch([Work(kind=WorkKind.EXECUTION, id=i) for i in ids])
    h.drain("lifo")
    with h.db.sessions() as s:
        p = s.get(BlockExecution, ids[0])
        v = s.get(BlockExecution, ids[1])
        assert p is not None and v is not None
        assert (p.state, p.outputs) == ("completed", {"output": {"type": "json", "data": 14}})
        assert v.state == "completed"
        assert unwrap(v.outputs) == {"output": {"v": 1}}
        assert v.consensus is not None and v.consensus["likelihoods"] == {"v": pytest.approx(2 / 3)}
        calls = s.scalars(select(ModelCall).where(ModelCall.execution_id == v.id)).all()
        assert len(calls) == 3 and all(c.run_id is None for c in calls)
    # The source run is untouched.
    assert h.run(run_id).steps_total == 3


def _execution(h: Harness, run_id: str, wf: str, **overrides: Any) -> str:
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


def test_safety_net_ends_an_execution_whose_attempt_faulted(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 2})
    h.drain()
    h.provider.answers = [{"v": 1}] * 3
    ex_id = _execution(h, run_id, wf)
    h.dispatcher.dispatch([Work(kind=WorkKind.EXECUTION, id=ex_id)])
    h.deliver(h.dispatcher.queue.pop(0))  # fans out three attempts

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("reconcile exploded")

    monkeypatch.setattr(samples, "_reconcile", explode)
    h.drain()
    with h.db.sessions() as s:
        ex = s.get(BlockExecution, ex_id)
        assert ex is not None
        assert ex.state == "error"
        assert ex.error_type == "finally_safety_net"
        assert ex.error_message == "reconcile exploded"
    assert h.run(run_id).status == "completed"  # the source run is not touched


@pytest.mark.parametrize("order", ORDERS)
def test_nested_for_each(h: Harness, order: str) -> None:
    blocks = [
        start_block("rows"),
        block("outer", "for_each", body=["inner"]),
        block("inner", "for_each", body=["double"]),
        fn("double", "double"),
        block("end", "end"),
    ]
    edges = [
        edge("start", "rows", "outer", "items"),
        edge("outer", "item", "inner", "items"),
        edge("inner", "item", "double", "value"),
        edge("outer", "results", "end", "results"),
    ]
    run_id = h.start(h.workflow(blocks, edges), {"rows": [[1, 2], [3], []]})
    h.drain(order, seed=5)
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    steps = h.steps(run_id)
    assert {"outer[0]/inner", "outer[0]/inner[1]/double", "outer[1]/inner[0]/double"} <= set(steps)
    assert steps["outer[0]/inner[1]/double"].scope == "outer[0]/inner[1]"
    assert h.output(run_id) == {"results": [{"results": [2, 4]}, {"results": [6]}, {"results": []}]}
    assert h.calls["double"] == 3
    # start, outer, 3 inner, 3 doubles, end
    assert run.steps_total == run.steps_done == 9


@pytest.mark.parametrize(
    ("items", "error_type"),
    [("not a list", "bad_items"), (list(range(6)), "too_many_items")],
)
def test_for_each_refuses_bad_items(
    tmp_path: Path, h: Harness, items: Any, error_type: str
) -> None:
    h.orch.settings = Settings(data_dir=str(tmp_path), max_for_each_items=5, inline_successors=0)
    run_id = h.start(h.workflow(*for_each_graph()), {"items": items})
    h.drain()
    run = h.assert_settled(run_id)
    assert (run.status, run.termination_reason) == ("failed", "execution_error")
    assert h.steps(run_id)["pages"].error_type == error_type
    assert not any("/" in k for k in h.steps(run_id))


def test_claim_and_finish_semantics(h: Harness) -> None:
    run_id = h.start(h.workflow(*linear_graph()), {"doc": 1}, publish=False)
    sid = h.steps(run_id)["start"].id
    t0 = utcnow()
    lease = timedelta(minutes=15)

    def do_claim(worker: str, alive: bool | None, now: Any = None) -> Any:
        with h.db.transaction() as s:
            return claim(
                s, Step, sid, worker=worker, holder_alive=lambda _: alive, lease=lease, now=now
            )

    # pending: the worker beat the API's "mark queued"; both moves are legal.
    first = do_claim("w:1", None, t0)
    assert (first.attempt, first.taken_over) == (1, False)
    assert h.steps(run_id)["start"].queued_at is not None
    # Running and the holder alive or unknown, within its lease: a duplicate (a live
    # holder past its lease is taken over: tests/unit/test_leases.py).
    assert do_claim("w:2", True, t0 + timedelta(minutes=14)) is None
    assert do_claim("w:2", None, t0 + timedelta(minutes=1)) is None
    # The holder is gone: taken over, with the next attempt number.
    second = do_claim("w:2", False, t0 + timedelta(minutes=1))
    assert (second.attempt, second.taken_over) == (2, True)
    # Unknown holder past the lease: taken over too.
    third = do_claim("w:3", None, t0 + timedelta(hours=1))
    assert (third.attempt, third.worker) == (3, "w:3")
    from engine.claims import finish

    with h.db.transaction() as s:
        assert not finish(s, Step, sid, StepState.COMPLETED, attempt=2, values={"reason": "old"})
        assert finish(s, Step, sid, StepState.COMPLETED, attempt=3, values={})
    with h.db.transaction() as s:
        assert not finish(s, Step, sid, StepState.ERROR, attempt=3, values={})
    row = h.steps(run_id)["start"]
    assert (row.state, row.attempt, row.worker, row.reason) == ("completed", 3, "w:3", None)
    assert do_claim("w:4", False) is None  # terminal rows are never claimed
    with h.db.transaction() as s:
        assert (
            claim(s, Step, "0" * 24, worker="w", holder_alive=lambda _: None, lease=lease) is None
        )


def test_a_stale_consensus_fan_out_creates_no_attempts(h: Harness) -> None:
    blocks = [
        start_block("doc"),
        block("ex", "extract", schema={"type": "object"}, n_consensus=3),
        block("end", "end"),
    ]
    edges = [edge("start", "doc", "ex", "document"), edge("ex", "output", "end", "x")]
    run_id = h.start(h.workflow(blocks, edges), {"doc": "d"})
    h.deliver(h.dispatcher.queue.pop(0))  # start
    ex_id = h.steps(run_id)["ex"].id
    job = claim_step(h.orch.message(), ex_id)
    assert job is not None
    with h.db.transaction() as s:
        s.execute(update(Step).where(Step.id == ex_id).values(attempt=job.attempt + 1))
    settle_step(h.orch.message(), job, FanOutConsensus(n=3), claim_next=False)
    with h.db.sessions() as s:
        assert s.scalars(select(ConsensusSample.id)).all() == []
    ex = h.steps(run_id)["ex"]
    assert (ex.open_children, ex.n_consensus) == (0, 1)


def test_outbox_republishes_a_running_row_whose_holder_died_with_its_message(
    h: Harness,
) -> None:
    """A worker killed while the broker lost its message: only the sweeper can save the row."""
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 5})
    h.deliver(h.dispatcher.queue.pop(0))  # start ran; the next step is queued
    step_id = next(s.id for k, s in h.steps(run_id).items() if k != "start")
    lost = h.dispatcher.queue.copy()
    h.dispatcher.queue.clear()
    with h.db.transaction() as s:  # claimed by a worker that then died, message gone
        claim(
            s, Step, step_id, worker="gone:1", holder_alive=lambda _: None, lease=timedelta(hours=1)
        )
    assert lost == [Work(kind=WorkKind.STEP, id=step_id)]
    alive = {"gone:1": True}
    assert (
        sweep(h.db, h.dispatcher, older_than_s=0, lease_s=3600, holder_alive=lambda w: alive.get(w))
        == 0
    )  # its holder still lives
    alive["gone:1"] = False
    assert (
        sweep(h.db, h.dispatcher, older_than_s=0, lease_s=3600, holder_alive=lambda w: alive.get(w))
        == 1
    )
    assert h.dispatcher.queue == [Work(kind=WorkKind.STEP, id=step_id)]
    unknown_host = sweep(
        h.db, h.dispatcher, older_than_s=0, lease_s=3600, holder_alive=lambda w: None
    )
    assert unknown_host == 0  # another host: only an expired lease tells
    h.dispatcher.queue.clear()
    with h.db.transaction() as s:  # nobody renewed its lease: it ran out
        expired = utcnow() - timedelta(seconds=1)
        s.execute(update(Step).where(Step.id == step_id).values(leased_until=expired))
    assert sweep(h.db, h.dispatcher, older_than_s=0, lease_s=3600, holder_alive=lambda w: None) == 1
    rescuer = h.orchestrator("test-host:9", lambda holder: False)  # it knows the holder died
    rescuer.run_step(h.dispatcher.queue.pop(0).id)
    h.drain()
    assert h.assert_settled(run_id).status == "completed"
    assert (
        h.steps(run_id)[next(k for k in h.steps(run_id) if k not in ("start", "end"))].attempt == 2
    )


def test_a_ready_successor_runs_in_process_without_a_message(h: Harness, tmp_path: Path) -> None:
    h.orch.settings = Settings(data_dir=str(tmp_path), inline_successors=100)
    wf = h.workflow(*diamond_graph())
    run_id = h.start(wf, {"n": 3})
    first = h.dispatcher.queue.pop(0)
    h.deliver(first)
    # One branch ran in-process (its join waits for the other): the other branch went to
    # the broker, the in-process one not at all.
    assert len(h.dispatcher.queue) == 1
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    assert run.steps_done == run.steps_total == 5


def test_a_chained_step_costs_one_transaction(h: Harness, tmp_path: Path) -> None:
    """Settling a step claims the successor it made ready in the same commit."""
    from sqlalchemy import event

    from engine.db.models import RunEvent

    h.orch.settings = Settings(data_dir=str(tmp_path), inline_successors=100)
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 21})
    commits: list[int] = []

    def on_commit(conn: Any) -> None:
        commits.append(1)

    event.listen(h.db.engine, "commit", on_commit)
    h.deliver(h.dispatcher.queue.pop(0))
    event.remove(h.db.engine, "commit", on_commit)
    run = h.assert_settled(run_id)
    assert run.status == "completed" and h.output(run_id) == {"result": 42}
    # start: claim + settle (claiming f); f: settle (claiming end); end: settle.
    assert len(commits) == 4
    # Every step went through running, and the run's events describe each commit.
    with h.db.sessions() as s:
        events = s.scalars(
            select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq)
        ).all()
    states = [
        (st["block_id"], st["status"])
        for e in events
        if e.kind == "steps"
        for st in e.data["steps"]
    ]
    for block_id in ("start", "f", "end"):
        assert (block_id, "running") in states
        assert (block_id, "completed") in states
    runs = [e.data for e in events if e.kind == "run"]
    assert runs[-1]["status"] == "completed"
    assert runs[-1]["progress"] == {"steps_total": 3, "steps_done": 3}
    # Nothing was published for the steps run in-process.
    assert h.dispatcher.queue == []


def test_events_of_one_transaction_are_written_at_commit_in_their_final_state(
    h: Harness,
) -> None:
    from engine.db.models import RunEvent
    from engine.events import record_run, record_step_rows, record_steps

    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 1}, publish=False)
    with h.db.transaction() as s:
        run = s.get(Run, run_id)
        assert run is not None
        step = s.scalars(select(Step).where(Step.run_id == run_id)).one()
        before = s.scalar(select(func.count()).select_from(RunEvent))
        record_run(s, run)
        record_step_rows(s, run_id, [step])  # as it is now: pending (not published)
        record_steps(s, run_id, [step.id])  # as it is at commit: skipped
        s.execute(update(Step).where(Step.id == step.id).values(state="skipped"))
        run.steps_done = 1
        record_run(s, run)
        # Nothing is written before the commit.
        assert s.scalar(select(func.count()).select_from(RunEvent)) == before
    with h.db.sessions() as s:
        events = s.scalars(
            select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq)
        ).all()[-3:]
    assert [e.kind for e in events] == ["steps", "steps", "run"]
    assert events[0].data["steps"][0]["status"] == "pending"
    assert events[1].data["steps"][0]["status"] == "skipped"
    assert events[1].data["steps"][0]["block_id"] == "start"
    # Two records of the run in one transaction: one event, with the final progress.
    assert events[2].data["progress"]["steps_done"] == 1
    assert events[2].data["status"] == "not_started"


def test_events_of_a_rolled_back_transaction_are_dropped(h: Harness) -> None:
    from engine.db.models import RunEvent
    from engine.events import record_run

    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 1}, publish=False)
    with h.db.sessions() as s:
        count = s.scalar(select(func.count()).select_from(RunEvent))
    with pytest.raises(RuntimeError), h.db.transaction() as s:
        run = s.get(Run, run_id)
        assert run is not None
        record_run(s, run)
        raise RuntimeError("rolled back")
    with h.db.transaction() as s:
        pass  # a later commit on a new session writes nothing left over
    with h.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(RunEvent)) == count


class Died(BaseException):
    """The process running the block is killed (not an exception the engine could catch)."""


def test_a_chain_left_running_by_a_dead_process_is_recovered_by_its_redelivered_message(
    h: Harness, tmp_path: Path
) -> None:
    settings = Settings(data_dir=str(tmp_path), inline_successors=100)
    dying = Worker(
        db=h.db,
        dispatcher=h.dispatcher,
        tools=h.orch.tools,
        settings=settings,
        worker="test-host:666",
        holder_alive=lambda holder: None,
    )
    h.orch.settings = settings
    h.orch.holder_alive = lambda holder: False if holder == "test-host:666" else None
    died = []

    def dies_once(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        if not died:
            died.append(1)
            raise Died
        return inputs["value"] * 2

    h.register("dies_once", dies_once)
    blocks = [start_block("doc"), fn("f", "dies_once"), block("end", "end")]
    edges = [edge("start", "doc", "f", "value"), edge("f", "output", "end", "result")]
    run_id = h.start(h.workflow(blocks, edges), {"doc": 21})
    message = h.dispatcher.queue.pop(0)
    with pytest.raises(Died):
        dying.run_step(message.id)  # start settled, f claimed in-process, then the kill
    assert h.states(run_id) == {"start": "completed", "f": "running"}
    assert h.dispatcher.queue == []  # nothing was published for f
    # The broker gives the unacknowledged message back; another process gets it.
    h.deliver(message)
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    assert h.output(run_id) == {"result": 42}
    assert h.steps(run_id)["f"].attempt == 2


def test_a_redelivered_message_of_a_live_holder_recovers_nothing(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 21})
    first = h.dispatcher.queue[0]
    h.drain()
    assert h.run(run_id).status == "completed"
    h.deliver(first)  # a duplicate: its holder (this process) is not known to be dead
    assert h.dispatcher.queue == []
