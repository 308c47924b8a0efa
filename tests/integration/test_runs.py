"""Runs executed by real Celery workers on Redis, with state in PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet import Api, Fleet, by_step_id

pytestmark = pytest.mark.integration


def start(**inputs: str) -> dict[str, Any]:
    return {
        "id": "start",
        "type": "start",
        "config": {"inputs": {k: {"type": v} for k, v in inputs.items()}},
    }


def fn(block_id: str, function: str, **params: Any) -> dict[str, Any]:
    return {"id": block_id, "type": "function", "config": {"function": function, "params": params}}


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


END = {"id": "end", "type": "end"}


def test_diamond_join_runs_once(api: Api, fleet: Fleet) -> None:
    graph = {
        "blocks": [
            start(x="json"),
            fn("left", "double"),
            fn("right", "inc"),
            fn("join", "add"),
            END,
        ],
        "edges": [
            edge("start", "x", "left", "value"),
            edge("start", "x", "right", "value"),
            edge("left", "output", "join", "a"),
            edge("right", "output", "join", "b"),
            edge("join", "output", "end", "sum"),
        ],
    }
    wf = api.create_workflow(graph)
    run = api.wait_run(api.start_run(wf["id"], {"x": 5})["id"])
    assert run["status"] == "completed", run
    assert run["termination_reason"] is None
    assert run["io_pairs"][0]["output"] == {"sum": 16}
    steps = api.steps(run["id"])
    assert sorted(s["step_id"] for s in steps) == ["end", "join", "left", "right", "start"]
    join = by_step_id(steps)["join"]
    assert join["inputs"] == {"a": {"type": "json", "data": 10}, "b": {"type": "json", "data": 6}}
    assert run["progress"] == {"steps_total": 5, "steps_done": 5}


def test_router_skips_the_inactive_branch(api: Api) -> None:
    graph = {
        "blocks": [
            start(n="json"),
            {
                "id": "route",
                "type": "router",
                "config": {"routes": [{"handle": "big", "when": "input > 10"}], "default": "small"},
            },
            fn("big_path", "double"),
            fn("small_path", "inc"),
            fn("after_big", "inc"),
            END,
        ],
        "edges": [
            edge("start", "n", "route", "input"),
            edge("route", "big", "big_path", "value"),
            edge("route", "small", "small_path", "value"),
            edge("big_path", "output", "after_big", "value"),
            edge("after_big", "output", "end", "big"),
            edge("small_path", "output", "end", "small"),
        ],
    }
    wf = api.create_workflow(graph)
    run = api.wait_run(api.start_run(wf["id"], {"n": 3})["id"])
    assert run["status"] == "completed"
    assert run["io_pairs"][0]["output"] == {"small": 4}
    steps = by_step_id(api.steps(run["id"]))
    assert steps["big_path"]["lifecycle"] == {"status": "skipped", "reason": "inactive_inputs"}
    assert steps["after_big"]["lifecycle"]["status"] == "skipped"
    assert steps["route"]["active_output_handles"] == ["small"]


def test_for_each_of_twenty_items_gathers_in_order(api: Api) -> None:
    graph = {
        "blocks": [
            start(items="json"),
            {"id": "pages", "type": "for_each", "config": {"body": ["double"]}},
            fn("double", "double"),
            END,
        ],
        "edges": [
            edge("start", "items", "pages", "items"),
            edge("pages", "item", "double", "value"),
            edge("pages", "results", "end", "results"),
        ],
    }
    wf = api.create_workflow(graph)
    run = api.wait_run(api.start_run(wf["id"], {"items": list(range(20))})["id"])
    assert run["status"] == "completed", run
    assert run["io_pairs"][0]["output"] == {"results": [i * 2 for i in range(20)]}
    steps = by_step_id(api.steps(run["id"]))
    assert steps["pages[2]/double"]["outputs"] == {"output": {"type": "json", "data": 4}}
    assert len([s for s in steps if s.startswith("pages[")]) == 20


def test_failing_block_fails_the_run(api: Api) -> None:
    graph = {
        "blocks": [
            start(x="json"),
            fn("boom", "explode", message="no good"),
            fn("after", "inc"),
            END,
        ],
        "edges": [
            edge("start", "x", "boom", "value"),
            edge("boom", "output", "after", "value"),
            edge("after", "output", "end", "out"),
        ],
    }
    wf = api.create_workflow(graph)
    run = api.wait_run(api.start_run(wf["id"], {"x": 1})["id"])
    assert run["status"] == "failed"
    assert run["termination_reason"] == "execution_error"
    steps = by_step_id(api.steps(run["id"]))
    assert steps["boom"]["lifecycle"] == {
        "status": "error",
        "message": "no good",
        "error": {"type": "ValueError", "message": "no good"},
    }
    assert "after" not in steps


def test_sigkilled_worker_mid_step_still_completes_once(
    api: Api, fleet: Fleet, tmp_path: Path
) -> None:
    marker = tmp_path / "slow.pid"
    graph = {
        "blocks": [
            start(x="json"),
            fn("slow", "slow", seconds=3, marker=str(marker)),
            fn("after", "effect", tag=f"after-{tmp_path.name}"),
            END,
        ],
        "edges": [
            edge("start", "x", "slow", "value"),
            edge("slow", "output", "after", "value"),
            edge("after", "output", "end", "out"),
        ],
    }
    wf = api.create_workflow(graph)
    run_id = api.start_run(wf["id"], {"x": 7})["id"]
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.05)
    os.kill(int(marker.read_text()), signal.SIGKILL)
    run = api.wait_run(run_id, timeout=90)
    assert run["status"] == "completed", run
    assert run["io_pairs"][0]["output"] == {"out": 7}
    steps = [s for s in api.steps(run_id) if s["block_id"] == "slow"]
    assert len(steps) == 1
    assert steps[0]["lifecycle"]["status"] == "completed"
    effects = (
        Path(fleet.env["QUORUM_TEST_EFFECTS_DIR"]) / f"after-{tmp_path.name}.log"
    ).read_text()
    assert effects.splitlines() == [f"7 {effects.split()[1]}"]  # the downstream ran exactly once


@pytest.mark.parametrize(("fail_times", "retries", "state"), [(2, 2, "completed"), (5, 1, "error")])
def test_block_retries_with_backoff(
    api: Api, fleet: Fleet, tmp_path: Path, fail_times: int, retries: int, state: str
) -> None:
    tag = f"{tmp_path.name}-{fail_times}"
    block = fn("flaky", "flaky", tag=tag, fail_times=fail_times)
    block["config"].update(retries=retries, retry_backoff_s=0.2)
    graph = {
        "blocks": [start(x="json"), block, END],
        "edges": [edge("start", "x", "flaky", "value"), edge("flaky", "output", "end", "y")],
    }
    wf = api.create_workflow(graph)
    run = api.wait_run(api.start_run(wf["id"], {"x": 3})["id"])
    step = by_step_id(api.steps(run["id"]))["flaky"]
    assert step["lifecycle"]["status"] == state
    calls = (Path(fleet.env["QUORUM_TEST_EFFECTS_DIR"]) / f"flaky-{tag}.log").read_text()
    assert len(calls.splitlines()) == retries + 1 if state == "error" else fail_times + 1
    if state == "completed":
        assert run["status"] == "completed"
        assert run["io_pairs"][0]["output"] == {"y": 3}
    else:
        assert run["status"] == "failed"
        assert step["lifecycle"]["error"] == {
            "type": "ConnectionError",
            "message": f"flaky failure {retries + 1}",
        }
