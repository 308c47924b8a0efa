"""Limits on what one request stores or computes, run in-process (see engine.limits)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from engine.errors import Invalid
from engine.limits import TooManyRuns, check_active_runs, json_size
from engine.settings import Settings
from engine.worker.entry import Worker
from engine.workflows import create_workflow, patch_block, replace_draft
from tests.support.harness import (
    Harness,
    block,
    edge,
    fn,
    for_each_graph,
    linear_graph,
    start_block,
)


def limited(h: Harness, **limits: Any) -> None:
    """Run the harness's work under other limits."""
    h.settings = dataclasses.replace(h.settings, **limits)
    h.orch = Worker(
        db=h.db,
        dispatcher=h.dispatcher,
        tools=h.orch.tools,
        settings=h.settings,
        worker="test-host:1",
        holder_alive=lambda holder: None,
    )


def test_a_3_mb_output_fails_its_step_with_output_too_large(h: Harness) -> None:
    h.register("blob", lambda i, p: "x" * 3_000_000)
    blocks, edges = linear_graph()
    blocks[1] = fn("f", "blob")
    wf = h.workflow(blocks, edges)
    run_id = h.start(wf, {"doc": 1})
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "failed" and run.termination_reason == "execution_error"
    step = h.steps(run_id)["f"]
    assert step.state == "error" and step.error_type == "output_too_large"
    assert "QUORUM_MAX_STEP_OUTPUT_BYTES" in (step.error_message or "")
    assert step.outputs in (None, {})


def loop_of_blobs() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """A router loop whose member passes a 10 kB value around, 8 times."""
    return (
        [
            start_block("n"),
            block("r", "router", routes=[{"handle": "again", "when": "input < 8"}], default="done"),
            fn("grow", "grow"),
            fn("count", "count"),
            block("end", "end"),
        ],
        [
            edge("start", "n", "r", "input"),
            edge("r", "again", "grow", "value"),
            edge("grow", "output", "count", "value"),
            edge("count", "output", "r", "input"),
            edge("r", "done", "end", "result"),
        ],
    )


def test_a_run_that_stores_more_than_its_limit_fails(h: Harness) -> None:
    h.register("grow", lambda i, p: {"n": i["value"], "pad": "y" * 10_000})
    h.register("count", lambda i, p: i["value"]["n"] + 1)
    wf = h.workflow(*loop_of_blobs(), settings={"max_block_visits": 20})
    limited(h, max_run_stored_bytes=60_000)
    run_id = h.start(wf, {"n": 0})
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "failed"
    failed = [s for s in h.steps(run_id).values() if s.state == "error"]
    assert [s.error_type for s in failed] == ["run_storage_exceeded"]
    assert run.stored_bytes <= 60_000
    # Every completed step's bytes were counted.
    done = [s for s in h.steps(run_id).values() if s.state == "completed"]
    assert run.stored_bytes >= sum(json_size(s.outputs or {}) for s in done) - len(done) * 64


def test_a_for_each_of_items_times_body_blocks_over_the_limit_fails_before_fanning_out(
    h: Harness,
) -> None:
    limited(h, max_for_each_steps=50)
    wf = h.workflow(*for_each_graph())
    run_id = h.start(wf, {"items": list(range(51))})
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "failed"
    steps = h.steps(run_id)
    assert steps["pages"].error_type == "too_many_items"
    assert "QUORUM_MAX_FOR_EACH_STEPS" in (steps["pages"].error_message or "")
    assert not any(k.startswith("pages[") for k in steps)  # no iteration was created
    ok = h.start(wf, {"items": list(range(50))})
    h.drain()
    assert h.assert_settled(ok).status == "completed"


def router_with(n: int) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    routes = [{"handle": f"h{i}", "when": f"input == {i}"} for i in range(n)]
    return (
        [start_block("n"), block("r", "router", routes=routes, default="other")],
        [edge("start", "n", "r", "input")],
    )


def test_a_router_with_too_many_routes_is_refused_at_save(h: Harness) -> None:
    blocks, edges = router_with(2_000)
    with h.db.transaction() as s, pytest.raises(Invalid) as exc:
        create_workflow(s, h.org_id, name="wf", blocks=blocks, edges=edges, max_routes=50)
    assert [e.loc for e in exc.value.errors] == [("body", "blocks", 1, "config", "routes")]
    assert "at most 50" in exc.value.errors[0].msg
    blocks, edges = router_with(50)
    with h.db.transaction() as s:
        wf = create_workflow(s, h.org_id, name="wf", blocks=blocks, edges=edges, max_routes=50)
    big, _ = router_with(51)
    with h.db.transaction() as s, pytest.raises(Invalid):
        replace_draft(s, h.org_id, wf.id, blocks=big, edges=edges, max_routes=50)
    with h.db.transaction() as s, pytest.raises(Invalid) as exc:
        patch_block(s, h.org_id, wf.id, "r", config=big[1]["config"], max_routes=50)
    assert exc.value.errors[0].loc == ("body", "config", "routes")


def test_active_runs_per_organization_are_limited(h: Harness) -> None:
    settings = Settings(data_dir=h.settings.data_dir, max_active_runs_per_org=2)
    wf = h.workflow(*linear_graph())
    for _ in range(2):
        with h.db.transaction() as s:
            check_active_runs(s, h.org_id, settings)
        h.start(wf, {"doc": 1}, publish=False)
    with h.db.transaction() as s, pytest.raises(TooManyRuns) as exc:
        check_active_runs(s, h.org_id, settings)
    assert exc.value.status == 429 and exc.value.retry_after_s > 0
    h.drain()
    # Once runs end, new ones may start.
    h.dispatcher.queue.clear()
    with h.db.transaction() as s:
        check_active_runs(s, "f" * 24, settings)  # another organization is not counted
