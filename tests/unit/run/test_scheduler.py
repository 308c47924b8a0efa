"""engine.run.scheduler (and foreach): joins, routers, loops and for_each, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.db.models import (
    Turn,
)
from engine.execute import unwrap
from engine.settings import Settings
from tests.support.harness import (
    ORDERS,
    Harness,
    block,
    diamond_graph,
    edge,
    fn,
    for_each_graph,
    linear_graph,
    loop_graph,
    router_graph,
    start_block,
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
