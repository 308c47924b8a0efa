"""Property: every graph the API accepts runs to an end on the in-process dispatcher.

Hypothesis builds graphs of functions, routers (loops included), ``for_each`` bodies and
end blocks with random edges. Graphs that validation refuses are left aside (the counts
show up in ``--hypothesis-show-statistics``); every accepted one is started and drained
in a random delivery order, and its run must end (terminal, nothing left open) instead
of waiting for the stale run reaper.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.errors import Invalid
from engine.functions import FunctionRegistry
from engine.lifecycle import OPEN_STEP_STATES, RUN
from engine.settings import Settings
from engine.testing import InProcessEngine, Order

# Loops end by a condition ("input < 3" with inc) or by max_block_visits.
CONDITIONS = ("true", "false", "input == 1", "input != null", "input < 3")
FUNCTIONS = ("identity", "inc", "pair", "split2")


def _inc(inputs: dict[str, Any]) -> Any:
    value = inputs.get("value")
    return value + 1 if isinstance(value, int) and not isinstance(value, bool) else 1


def _pair(inputs: dict[str, Any]) -> Any:
    value = next(iter(inputs.values()), None)
    return [value, value]


def _split2(inputs: dict[str, Any]) -> Any:
    # An odd number goes out on p, an even one on q, anything else on both.
    value = next(iter(inputs.values()), None)
    if isinstance(value, int) and not isinstance(value, bool):
        return {"p": value} if value % 2 else {"q": value}
    return {"p": value, "q": value}


def _functions() -> FunctionRegistry:
    functions = FunctionRegistry()
    functions.register("identity", lambda inputs: next(iter(inputs.values()), None))
    functions.register("inc", _inc)
    functions.register("pair", _pair)
    functions.register("split2", _split2)
    return functions


@pytest.fixture(scope="module", params=[0, 100], ids=["queued", "inline"])
def engine(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[InProcessEngine]:
    # Successors through the queue, and run in-process by the worker that made them ready.
    settings = Settings(
        data_dir=str(tmp_path_factory.mktemp("prop")), inline_successors=request.param
    )
    e = InProcessEngine(settings, functions=_functions())
    yield e
    e.close()


def _open_steps(engine: InProcessEngine, run_id: str) -> set[str]:
    return {k for k, v in engine.steps(run_id).items() if v.state in OPEN_STEP_STATES}


def _block(bid: str, kind: str, draw: Any) -> dict[str, Any]:
    if kind == "function":
        name = draw(st.sampled_from(FUNCTIONS))
        config = {"function": name}
        if name == "split2":
            config["outputs"] = ["p", "q"]
        return {"id": bid, "type": "function", "config": config}
    if kind == "router":
        routes = [
            {"handle": f"r{i}", "when": draw(st.sampled_from(CONDITIONS))}
            for i in range(draw(st.integers(1, 2)))
        ]
        config: dict[str, Any] = {"routes": routes}
        if draw(st.booleans()):
            config["default"] = "other"
        if draw(st.booleans()):
            config["mode"] = "all"
        return {"id": bid, "type": "router", "config": config}
    if kind == "for_each":
        return {"id": bid, "type": "for_each", "config": {"body": []}}
    return {"id": bid, "type": "end", "config": {}}


def _outputs(block: dict[str, Any]) -> list[str]:
    kind, config = block["type"], block["config"]
    if kind == "start":
        return ["x"]
    if kind == "function":
        return list(config.get("outputs") or ["output"])
    if kind == "router":
        return [r["handle"] for r in config["routes"]] + (
            [config["default"]] if "default" in config else []
        )
    if kind == "for_each":
        return ["item", "results"]
    return []


def _input(block: dict[str, Any], i: int) -> str:
    return {"router": "input", "for_each": "items"}.get(block["type"], f"in{i}")


@st.composite
def graphs(draw: Any) -> dict[str, Any]:
    """Blocks in scopes (top level or a for_each body), edges mostly within a scope."""
    kinds = draw(
        st.lists(st.sampled_from(["function", "router", "for_each", "end"]), min_size=1, max_size=8)
    )
    blocks = [{"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}}]
    owner: dict[str, str | None] = {"start": None}
    for i, kind in enumerate(kinds):
        b = _block(f"b{i}", kind, draw)
        loops = [c["id"] for c in blocks if c["type"] == "for_each"]
        home = draw(st.sampled_from([None, *loops])) if kind != "end" else None
        if home is not None:
            next(c for c in blocks if c["id"] == home)["config"]["body"].append(b["id"])
        owner[b["id"]] = home
        blocks.append(b)
    for fe in [b for b in blocks if b["type"] == "for_each" and not b["config"]["body"]]:
        # Every for_each gets a body: one function of its own if none was drawn.
        member = {"id": f"{fe['id']}-f", "type": "function", "config": {"function": "inc"}}
        fe["config"]["body"].append(member["id"])
        owner[member["id"]] = fe["id"]
        blocks.append(member)
    edges: list[dict[str, str]] = []
    for j, target in enumerate(blocks[1:], start=1):
        home = owner[target["id"]]
        feeds = [
            (c, h) for c in blocks[:j] if owner[c["id"]] == home for h in _outputs(c) if h != "item"
        ]
        if home is not None:
            feeds.append((next(c for c in blocks if c["id"] == home), "item"))
        for k in range(draw(st.integers(1, 2))):
            if feeds:
                source, handle = draw(st.sampled_from(feeds))
                edges.append(_edge(source, handle, target, k))
    for _ in range(draw(st.integers(0, 3))):  # back edges: loops (valid through a router)
        # Mostly inside a for_each body, where a loop can swallow the body's entry.
        bodies = sorted({h for h in owner.values() if h is not None})
        home = draw(st.sampled_from(bodies)) if bodies and draw(st.booleans()) else None
        members = [b for b in blocks[1:] if owner[b["id"]] == home]
        a, b = draw(st.integers(0, len(members) - 1)), draw(st.integers(0, len(members) - 1))
        source, target = members[max(a, b)], members[min(a, b)]
        handles = [h for h in _outputs(source) if h != "item"]
        if handles:
            edges.append(_edge(source, draw(st.sampled_from(handles)), target, 5))
    return {"blocks": blocks, "edges": edges}


def _edge(source: dict[str, Any], handle: str, target: dict[str, Any], k: int) -> dict[str, str]:
    return {
        "source": source["id"],
        "source_handle": handle,
        "target": target["id"],
        "target_handle": _input(target, k),
    }


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    graph=graphs(),
    x=st.sampled_from([1, [1, 2]]),
    order=st.sampled_from(["fifo", "lifo", "shuffle"]),
    seed=st.integers(0, 99),
)
def test_every_accepted_graph_runs_to_an_end(
    engine: InProcessEngine, graph: dict[str, Any], x: Any, order: Order, seed: int
) -> None:
    try:
        run_id = engine.run_to_rest(graph, {"x": x}, order, seed)
    except Invalid:
        event("refused at save")
        return
    status = engine.run(run_id).status
    event(f"accepted: {status}")
    assert RUN.is_terminal(status), (status, _open_steps(engine, run_id), graph)
    assert _open_steps(engine, run_id) == set(), (status, graph)
