"""Graph shapes whose runs could never end are refused when the workflow is saved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from api.app import create_app
from engine.auth import issue_key
from engine.db.models import Workflow, WorkflowVersion
from engine.errors import Invalid
from engine.functions import FunctionRegistry
from engine.settings import Settings
from engine.testing import InProcessEngine, QueueDispatcher


def block(bid: str, btype: str, **config: Any) -> dict[str, Any]:
    return {"id": bid, "type": btype, "config": config}


def edge(source: str, sh: str, target: str, th: str) -> dict[str, str]:
    return {"source": source, "source_handle": sh, "target": target, "target_handle": th}


START = block("start", "start", inputs={"x": {"type": "json"}})
AGAIN = block("again", "router", routes=[{"handle": "loop", "when": "input < 3"}], default="done")


def body_without_entry() -> dict[str, Any]:
    """A for_each whose body starts nowhere: ``inc`` is fed by ``item`` and by the loop."""
    return {
        "blocks": [
            START,
            block("pair", "function", function="pair"),
            block("each", "for_each", body=["inc", "again"]),
            block("inc", "function", function="inc"),
            AGAIN,
            block("end", "end"),
        ],
        "edges": [
            edge("start", "x", "pair", "value"),
            edge("pair", "output", "each", "items"),
            edge("each", "item", "inc", "value"),
            edge("inc", "output", "again", "input"),
            edge("again", "loop", "inc", "value"),
            edge("each", "results", "end", "all"),
        ],
    }


def join_fed_from_inside_a_loop() -> dict[str, Any]:
    """``report`` after the loop reads ``inc``, a loop member that is not the router."""
    return {
        "blocks": [
            START,
            block("inc", "function", function="inc"),
            AGAIN,
            block("report", "function", function="identity"),
            block("end", "end"),
        ],
        "edges": [
            edge("start", "x", "inc", "value"),
            edge("inc", "output", "again", "input"),
            edge("again", "loop", "inc", "value"),
            edge("inc", "output", "report", "value"),
            edge("again", "done", "report", "done"),
            edge("report", "output", "end", "result"),
        ],
    }


def _functions() -> FunctionRegistry:
    functions = FunctionRegistry()
    functions.register("inc", lambda inputs: (inputs.get("value") or 0) + 1)
    functions.register("pair", lambda inputs: [inputs["value"], inputs["value"]])
    functions.register("identity", lambda inputs: next(iter(inputs.values()), None))
    return functions


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[InProcessEngine]:
    e = InProcessEngine(Settings(data_dir=str(tmp_path)), functions=_functions())
    yield e
    e.close()


def _refusal(engine: InProcessEngine, graph: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(Invalid) as info:
        engine.workflow(graph)
    assert info.value.status == 422
    return [(tuple(e.loc), e.msg) for e in info.value.errors]


def test_a_for_each_body_with_no_block_fed_only_by_item_is_refused(
    engine: InProcessEngine,
) -> None:
    errors = _refusal(engine, body_without_entry())
    assert len(errors) == 1
    loc, msg = errors[0]
    assert loc == ("body", "blocks", 2, "config", "body")
    assert "'each'" in msg and "item" in msg


def test_the_refused_body_shape_would_wait_forever(engine: InProcessEngine) -> None:
    # Why it is refused: stored past validation, its run never ends (the for_each waits
    # for two iterations that have nothing to start with), until the reaper fails it.
    graph = body_without_entry()
    with engine.db.transaction() as s:
        wf = Workflow(organization_id=engine.org_id, name="hangs", draft=graph, settings={})
        s.add(wf)
        s.flush()
        s.add(WorkflowVersion(workflow_id=wf.id, number=0, graph=graph, settings={}))
        wf_id = wf.id
    run_id = engine.start(wf_id, {"x": 1})
    engine.drain()
    assert engine.run(run_id).status == "running"
    assert {k: v.state for k, v in engine.steps(run_id).items()} == {
        "start": "completed",
        "pair": "completed",
        "each": "running",
    }


def test_a_join_fed_by_a_loop_member_other_than_the_router_is_refused(
    engine: InProcessEngine,
) -> None:
    errors = _refusal(engine, join_fed_from_inside_a_loop())
    assert len(errors) == 1
    loc, msg = errors[0]
    assert loc == ("body", "edges", 3)
    assert "'report'" in msg and "'inc'" in msg and "router" in msg


def test_the_same_loop_feeding_the_join_through_its_router_runs_to_the_end(
    engine: InProcessEngine,
) -> None:
    graph = join_fed_from_inside_a_loop()
    graph["edges"] = [e for e in graph["edges"] if e["source"] != "inc" or e["target"] != "report"]
    run_id = engine.run_to_rest(graph, {"x": 0})
    run = engine.run(run_id)
    assert run.status == "completed"
    assert engine.steps(run_id)["report"].outputs == {"output": {"type": "json", "data": 3}}


def test_a_for_each_on_a_loop_still_feeds_its_body_through_item(engine: InProcessEngine) -> None:
    # The 'item' edge goes into the body, which runs on each activation of the for_each:
    # not an edge leaving the loop.
    graph = {
        "blocks": [
            START,
            block("pair", "function", function="pair"),
            block("each", "for_each", body=["inc"]),
            block("inc", "function", function="inc"),
            block("again", "router", routes=[{"handle": "loop", "when": "false"}], default="done"),
            block("end", "end"),
        ],
        "edges": [
            edge("start", "x", "pair", "value"),
            edge("pair", "output", "each", "items"),
            edge("each", "item", "inc", "value"),
            edge("each", "results", "again", "input"),
            edge("again", "loop", "pair", "value"),
            edge("again", "done", "end", "all"),
        ],
    }
    run_id = engine.run_to_rest(graph, {"x": 1})
    assert engine.run(run_id).status == "completed"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    settings = Settings(data_dir=str(tmp_path), rate_limit_per_minute=0)
    app = create_app(settings, dispatcher=QueueDispatcher())
    from engine.db.models import Base

    Base.metadata.create_all(app.extensions["quorum"].db.engine)
    yield app
    app.extensions["quorum"].close()


@pytest.mark.parametrize("shape", [body_without_entry, join_fed_from_inside_a_loop])
def test_the_api_answers_422_naming_the_block(app: Flask, shape: Any) -> None:
    with app.extensions["quorum"].db.transaction() as s:
        key = issue_key(s, "acme").key
    client = app.test_client()
    resp = client.post(
        "/v1/workflows",
        json={"name": "wf", **shape()},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status_code == 422, resp.get_json()
    problem = resp.get_json()
    assert resp.content_type == "application/problem+json"
    named = {"body_without_entry": "'each'", "join_fed_from_inside_a_loop": "'report'"}
    assert any(named[shape.__name__] in e["msg"] for e in problem["errors"])
