"""Checkpoint runs on PostgreSQL and real workers: what a run inherits it reads in its
ancestors (engine.lineage), through forks of forks, block executions and evaluations."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fleet import Api, Fleet, by_step_id

pytestmark = pytest.mark.integration


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


def _graph(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "asks",
        "settings": settings or {},
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
            {"id": "prep", "type": "function", "config": {"function": "double"}},
            {"id": "ask", "type": "human_input", "config": {}},
            {"id": "decide", "type": "function", "config": {"function": "identity"}},
            {"id": "end", "type": "end"},
        ],
        "edges": [
            edge("start", "x", "prep", "value"),
            edge("prep", "output", "ask", "prompt"),
            edge("ask", "response", "decide", "value"),
            # Turn 1 reads an output of turn 0: inherited, in a checkpoint run.
            edge("prep", "output", "end", "first"),
            edge("decide", "output", "end", "decision"),
        ],
    }


def _answered(api: Api, wf: dict[str, Any], answer: Any) -> dict[str, Any]:
    run = api.start_run(wf["id"], {"x": 21})
    api.wait_run(run["id"], until=lambda r: r["status"] == "waiting_for_user_input")
    r = api.post(f"/v1/workflows/runs/{run['id']}/input", {"input": answer})
    assert r.status_code == 202, r.text
    done = api.wait_run(run["id"])
    assert done["status"] == "completed", done
    return done


def _fork(api: Api, run_id: str, k: int, answer: Any) -> dict[str, Any]:
    r = api.post(
        f"/v1/workflows/runs/{run_id}/checkpoint", {"resume_turn_index": k, "input": answer}
    )
    assert r.status_code == 202, r.text
    done = api.wait_run(r.json()["id"])
    assert done["status"] == "completed", done
    return done


def test_a_fork_of_a_fork_reads_the_first_parents_turn(api: Api, fleet: Fleet) -> None:
    parent = _answered(api, api.post("/v1/workflows", _graph()).json(), "yes")
    before = api.steps(parent["id"])
    child = _fork(api, parent["id"], 1, "no")
    grandchild = _fork(api, child["id"], 1, "maybe")
    assert grandchild["original_run_id"] == child["id"]
    assert grandchild["io_pairs"][0] == parent["io_pairs"][0]
    assert grandchild["io_pairs"][1]["output"] == {"first": 42, "decision": "maybe"}
    steps = api.steps(grandchild["id"])
    assert grandchild["progress"]["steps_total"] == len(steps) == len(before)
    inherited = {k: v for k, v in by_step_id(steps).items() if v["turn_index"] == 0}
    assert inherited == {
        k: {**v, "run_id": grandchild["id"]}
        for k, v in by_step_id(before).items()
        if v["turn_index"] == 0
    }
    # A block execution reads an inherited step; the parent's rows stay as they were.
    r = api.post(
        "/v1/workflows/blocks/executions", {"run_id": grandchild["id"], "block_id": "prep"}
    )
    assert r.status_code == 202, r.text
    assert r.json()["source_step_id"] == "prep"
    assert r.json()["handle_inputs"]["value"] == {"type": "json", "data": 21}
    assert api.steps(parent["id"]) == before


def test_an_evaluation_of_a_checkpoint_run_gets_its_first_input(api: Api) -> None:
    evaluator = api.post(
        "/v1/workflows",
        {
            "name": "evaluator",
            "blocks": [
                {
                    "id": "start",
                    "type": "start",
                    "config": {"inputs": {"inputs": {"type": "json"}, "outputs": {"type": "json"}}},
                },
                {"id": "score", "type": "function", "config": {"function": "identity"}},
                {"id": "end", "type": "end"},
            ],
            "edges": [
                edge("start", "inputs", "score", "value"),
                edge("score", "output", "end", "first"),
            ],
        },
    ).json()
    wf = api.post("/v1/workflows", _graph({"evaluation_workflow_id": evaluator["id"]})).json()
    parent = _answered(api, wf, "yes")
    child = _fork(api, parent["id"], 1, "no")
    child = api.wait_run(
        child["id"], until=lambda r: (r["evaluation"] or {}).get("status") == "completed"
    )
    # The evaluated run's first input is the one of turn 0, which it inherits.
    assert child["evaluation"]["outputs"] == {"first": {"x": 21}}
