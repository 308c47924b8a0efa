"""What one tenant's request may store or compute, replayed on real workers and ``quorum api``.

Before: a step's output had no size limit, a 100 KB input looped through a router grew a
run by megabytes per visit, a router could have any number of routes, a ``for_each``
inserted items x body blocks in one transaction, and no organization had a run quota.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.db.models import Step
from engine.db.session import Database
from tests.support.fleet import Api, Fleet, Worker, by_step_id
from tests.support.hostile import api_process

pytestmark = pytest.mark.integration

RUN_BYTES = 2_000_000


@pytest.fixture(scope="module")
def fleet_extra_env() -> dict[str, str]:
    # The workers' limits for this module (the defaults are larger).
    return {"QUORUM_MAX_RUN_STORED_BYTES": str(RUN_BYTES), "QUORUM_MAX_FOR_EACH_STEPS": "1000"}


@pytest.fixture(scope="module")
def served(fleet: Fleet) -> Iterator[tuple[Worker, str]]:
    yield api_process(fleet, {"QUORUM_MAX_ACTIVE_RUNS_PER_ORG": "2"})


@pytest.fixture
def client(api: Api, served: tuple[Worker, str]) -> Iterator[Api]:
    c = Api(served[1], api.http.headers["Authorization"].split()[1])
    yield c
    c.close()


def start(*handles: str) -> dict[str, Any]:
    inputs = {h: {"type": "json"} for h in handles}
    return {"id": "start", "type": "start", "config": {"inputs": inputs}}


def edge(source: str, sh: str, target: str, th: str) -> dict[str, str]:
    return {"source": source, "source_handle": sh, "target": target, "target_handle": th}


def fn(bid: str, name: str, **params: Any) -> dict[str, Any]:
    return {"id": bid, "type": "function", "config": {"function": name, "params": params}}


def test_a_3_mb_output_fails_its_step(client: Api) -> None:
    graph = {
        "blocks": [start("x"), fn("big", "blob", bytes=3_000_000), {"id": "end", "type": "end"}],
        "edges": [edge("start", "x", "big", "value"), edge("big", "output", "end", "y")],
    }
    wf = client.create_workflow(graph)
    run = client.wait_run(client.start_run(wf["id"], {"x": 1})["id"])
    assert run["status"] == "failed" and run["termination_reason"] == "execution_error"
    step = by_step_id(client.steps(run["id"]))["big"]
    assert step["lifecycle"]["status"] == "error"
    assert step["lifecycle"]["error"]["type"] == "output_too_large"


def test_a_loop_that_grows_its_run_is_stopped_at_the_run_limit(client: Api, fleet: Fleet) -> None:
    graph = {
        "blocks": [
            start("n"),
            {
                "id": "r",
                "type": "router",
                "config": {"routes": [{"handle": "again", "when": "true"}]},
            },
            fn("grow", "carry", pad=100_000),
        ],
        "edges": [
            edge("start", "n", "r", "input"),
            edge("r", "again", "grow", "value"),
            edge("grow", "output", "r", "input"),
        ],
    }
    wf = client.create_workflow({**graph, "settings": {"max_block_visits": 50}})
    run = client.wait_run(client.start_run(wf["id"], {"n": 0})["id"], timeout=120)
    assert run["status"] == "failed", run
    errors = [
        s["lifecycle"] for s in client.steps(run["id"]) if s["lifecycle"]["status"] == "error"
    ]
    assert [e["error"]["type"] for e in errors] == ["run_storage_exceeded"]
    db = Database(fleet.settings)
    try:
        with db.transaction() as s:
            stored = s.scalar(
                select(
                    func.sum(func.pg_column_size(Step.inputs) + func.pg_column_size(Step.outputs))
                ).where(Step.run_id == run["id"])
            )
    finally:
        db.close()
    # A few steps' worth over the limit at most (parallel steps are checked one by one).
    assert stored is not None and stored <= RUN_BYTES + 400_000, stored


def test_a_for_each_of_too_many_steps_fails_before_creating_them(client: Api) -> None:
    graph = {
        "blocks": [
            start("items"),
            {"id": "each", "type": "for_each", "config": {"body": ["a", "b"]}},
            fn("a", "inc"),
            fn("b", "inc"),
            {"id": "end", "type": "end"},
        ],
        "edges": [
            edge("start", "items", "each", "items"),
            edge("each", "item", "a", "value"),
            edge("a", "output", "b", "value"),
            edge("each", "results", "end", "r"),
        ],
    }
    wf = client.create_workflow(graph)
    run = client.wait_run(client.start_run(wf["id"], {"items": list(range(501))})["id"])
    assert run["status"] == "failed"
    steps = client.steps(run["id"])
    each = by_step_id(steps)["each"]
    assert each["lifecycle"]["error"]["type"] == "too_many_items"
    assert len(steps) <= 3  # start, each, and nothing of the 1,002 body steps


def test_a_router_of_2000_routes_is_422_when_saved(client: Api) -> None:
    routes = [{"handle": f"h{i}", "when": f"input == {i}"} for i in range(2_000)]
    graph = {
        "blocks": [start("n"), {"id": "r", "type": "router", "config": {"routes": routes}}],
        "edges": [edge("start", "n", "r", "input")],
    }
    r = client.post("/v1/workflows", {"name": "many", **graph})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", "blocks", 1, "config", "routes"]


def test_active_runs_per_organization_answer_429(client: Api) -> None:
    graph = {
        "blocks": [start("x"), fn("nap", "slow", seconds=4), {"id": "end", "type": "end"}],
        "edges": [edge("start", "x", "nap", "value"), edge("nap", "output", "end", "y")],
    }
    wf = client.create_workflow(graph)
    first = [client.start_run(wf["id"], {"x": i}) for i in range(2)]
    refused = client.post("/v1/workflows/runs", {"workflow_id": wf["id"], "inputs": {"x": 9}})
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) > 0
    assert "QUORUM_MAX_ACTIVE_RUNS_PER_ORG" in refused.json()["detail"]
    for run in first:
        client.wait_run(run["id"])
    assert client.start_run(wf["id"], {"x": 3})["status"] == "not_started"
