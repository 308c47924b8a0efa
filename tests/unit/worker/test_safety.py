"""engine.worker.safety: a faulted message never leaves its run or execution running."""

from __future__ import annotations

from typing import Any

import pytest

from engine.db.models import (
    BlockExecution,
)
from engine.ports import Work, WorkKind
from engine.run.scheduler import Scheduler
from engine.worker import samples
from tests.support.harness import (
    Harness,
    block,
    edge,
    linear_graph,
    start_block,
    start_execution,
)


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


def test_safety_net_ends_an_execution_whose_attempt_faulted(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 2})
    h.drain()
    h.provider.answers = [{"v": 1}] * 3
    ex_id = start_execution(h, run_id, wf)
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
