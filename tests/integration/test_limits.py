"""Limits answer clearly: 413 for a body too large, 422 naming what is over a limit, and a
``for_each`` over ``QUORUM_MAX_FOR_EACH_ITEMS`` fails its run with ``too_many_items``.

The workers of this module run with ``QUORUM_MAX_FOR_EACH_ITEMS=5``; every other limit is
at its default (1 MiB bodies, JSON 32 levels deep, 200 blocks per graph, ``n_consensus`` up
to 7, pages of up to 200). ``tests/integration/test_api_contract.py`` covers the parsing
side (smaller body limit, chunked bodies, very deep JSON, bad ``n_consensus`` values).
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from tests.support.fleet import Api, by_step_id

pytestmark = pytest.mark.integration

MAX_FOR_EACH = 5
MAX_BODY = 1_048_576
MAX_DEPTH = 32
MAX_BLOCKS = 200
EXECUTIONS = "/v1/workflows/blocks/executions"


@pytest.fixture(scope="module")
def fleet_extra_env() -> dict[str, str]:
    return {"QUORUM_MAX_FOR_EACH_ITEMS": str(MAX_FOR_EACH)}


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


def start(*handles: str) -> dict[str, Any]:
    return {
        "id": "start",
        "type": "start",
        "config": {"inputs": {h: {"type": "json"} for h in handles}},
    }


def fn(block_id: str, function: str) -> dict[str, Any]:
    return {"id": block_id, "type": "function", "config": {"function": function}}


END = {"id": "end", "type": "end"}
DOUBLE = {
    "blocks": [start("x"), fn("d", "double"), END],
    "edges": [edge("start", "x", "d", "value"), edge("d", "output", "end", "y")],
}


def chain(n_blocks: int) -> dict[str, Any]:
    """A valid linear graph of exactly ``n_blocks`` blocks: start, functions, end."""
    middle = [fn(f"f{i}", "identity") for i in range(n_blocks - 2)]
    ids = ["start", *(b["id"] for b in middle), "end"]
    edges = [
        edge(src, "x" if src == "start" else "output", dst, "value")
        for src, dst in itertools.pairwise(ids)
    ]
    return {"blocks": [start("x"), *middle, END], "edges": edges}


def extract(n: Any, block_type: str = "extract") -> dict[str, Any]:
    config: dict[str, Any] = {"n_consensus": n}
    if block_type == "extract":
        config["schema"] = {"type": "object", "properties": {"total": {"type": "number"}}}
    elif block_type == "classifier":
        config["categories"] = ["invoice", "receipt"]
    else:
        config["parts"] = [{"name": "head"}, {"name": "rest"}]
    out = {"extract": "output", "classifier": "invoice", "split": "head"}[block_type]
    return {
        "blocks": [start("doc"), {"id": "x", "type": block_type, "config": config}, END],
        "edges": [edge("start", "doc", "x", "document"), edge("x", out, "end", "data")],
    }


def problem(r: httpx.Response, status: int, loc: list[Any] | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == "application/problem+json"
    body = dict(r.json())
    assert body["status"] == status and body["detail"]
    if loc is not None:
        assert loc in [e["loc"] for e in body["errors"]], body
    return body


def workflow_ids(api: Api) -> set[str]:
    return {w["id"] for w in api.get("/v1/workflows", params={"limit": 200}).json()["data"]}


# -- for_each items --------------------------------------------------------------------------

FOR_EACH = {
    "blocks": [
        start("items"),
        {"id": "pages", "type": "for_each", "config": {"body": ["d"]}},
        fn("d", "double"),
        END,
    ],
    "edges": [
        edge("start", "items", "pages", "items"),
        edge("pages", "item", "d", "value"),
        edge("pages", "results", "end", "results"),
    ],
}


def test_a_for_each_over_the_item_limit_fails_the_run_with_too_many_items(api: Api) -> None:
    wf = api.create_workflow(FOR_EACH)
    at_limit = api.wait_run(api.start_run(wf["id"], {"items": list(range(MAX_FOR_EACH))})["id"])
    assert at_limit["status"] == "completed", at_limit
    assert at_limit["io_pairs"][0]["output"] == {"results": [0, 2, 4, 6, 8]}

    over = api.wait_run(api.start_run(wf["id"], {"items": list(range(MAX_FOR_EACH + 1))})["id"])
    assert over["status"] == "failed", over
    assert over["termination_reason"] == "execution_error"
    steps = by_step_id(api.steps(over["id"]))
    error = steps["pages"]["lifecycle"]
    assert error["status"] == "error", error
    assert error["error"]["type"] == "too_many_items"
    assert str(MAX_FOR_EACH) in error["error"]["message"]
    assert str(MAX_FOR_EACH + 1) in error["error"]["message"]
    # No iteration was started.
    assert not [s for s in steps if s.startswith("pages[")]
    assert "end" not in steps or steps["end"]["lifecycle"]["status"] != "completed"


# -- body size and JSON depth ----------------------------------------------------------------


def _padded(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (valid JSON, an unknown field)."""
    head = b'{"name": "wf", "blocks": [], "pad": "'
    tail = b'"}'
    raw = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(raw) == size
    return raw


def test_a_body_over_the_default_limit_is_413(api: Api) -> None:
    before = workflow_ids(api)
    ctype = {"Content-Type": "application/json"}
    at_limit = api.http.post("/v1/workflows", content=_padded(MAX_BODY), headers=ctype)
    problem(at_limit, 422)  # read and validated: the size is allowed
    for path in ("/v1/workflows", "/v1/workflows/runs", EXECUTIONS):
        over = api.http.post(path, content=_padded(MAX_BODY + 1), headers=ctype)
        body = problem(over, 413)
        assert body["type"].endswith("payload-too-large")
        assert str(MAX_BODY) in body["detail"]
    assert workflow_ids(api) == before


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"v": value}
    return value


def test_json_nested_deeper_than_the_limit_is_422(api: Api) -> None:
    wf = api.create_workflow(DOUBLE)
    # The body is level 1, ``metadata`` level 2, and its innermost value level levels + 2.
    deepest = MAX_DEPTH - 2
    ok = api.post(
        "/v1/workflows/runs",
        {"workflow_id": wf["id"], "inputs": {"x": 1}, "metadata": _nested(deepest)},
    )
    assert ok.status_code == 202, ok.text
    assert ok.json()["metadata"] == _nested(deepest)
    r = api.post(
        "/v1/workflows/runs",
        {"workflow_id": wf["id"], "inputs": {"x": 1}, "metadata": _nested(deepest + 1)},
    )
    body = problem(r, 422, ["body"])
    assert str(MAX_DEPTH) in body["detail"]
    runs = api.get("/v1/workflows/runs", params={"workflow_id": wf["id"]}).json()["data"]
    assert [run["id"] for run in runs] == [ok.json()["id"]]


# -- graph size and consensus fan-out --------------------------------------------------------


def test_more_blocks_than_the_limit_is_422(api: Api) -> None:
    largest = api.post("/v1/workflows", {"name": "largest", **chain(MAX_BLOCKS)})
    assert largest.status_code == 201, largest.text
    assert len(largest.json()["draft"]["blocks"]) == MAX_BLOCKS
    before = workflow_ids(api)
    r = api.post("/v1/workflows", {"name": "too large", **chain(MAX_BLOCKS + 1)})
    body = problem(r, 422, ["body", "blocks"])
    assert str(MAX_BLOCKS) in body["detail"]
    assert workflow_ids(api) == before
    url = f"/v1/workflows/{largest.json()['id']}"
    problem(api.http.put(f"{url}/draft", json=chain(MAX_BLOCKS + 1)), 422, ["body", "blocks"])
    assert api.get(url).json()["draft"] == largest.json()["draft"]


@pytest.mark.parametrize("block_type", ["extract", "classifier", "split"])
def test_consensus_fan_out_above_seven_is_422(api: Api, block_type: str) -> None:
    wf = api.create_workflow(extract(7, block_type))
    assert wf["draft"]["blocks"][1]["config"]["n_consensus"] == 7
    before = workflow_ids(api)
    for n in (9, 8, 15, 1001):
        r = api.post("/v1/workflows", {"name": "wide", **extract(n, block_type)})
        problem(r, 422, ["body", "blocks", 1, "config", "n_consensus"])
        r = api.http.patch(
            f"/v1/workflows/{wf['id']}/draft/blocks/x", json={"config": {"n_consensus": n}}
        )
        assert r.status_code == 422, r.text
        assert any(e["loc"][-1] == "n_consensus" for e in r.json()["errors"]), r.text
    assert workflow_ids(api) == before
    assert api.get(f"/v1/workflows/{wf['id']}").json()["draft"] == wf["draft"]


def test_a_block_execution_above_seven_attempts_is_422(api: Api) -> None:
    wf = api.create_workflow(extract(1))
    run = api.wait_run(api.start_run(wf["id"], {"doc": "total: 12"})["id"])
    assert run["status"] == "completed", run
    for n in (9, 8, 1001):
        r = api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "x", "n_consensus": n})
        problem(r, 422, ["body", "n_consensus"])
    assert api.get(EXECUTIONS, params={"run_id": run["id"]}).json()["data"] == []
    r = api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "x", "n_consensus": 7})
    assert r.status_code == 202, r.text
    done = api.wait_execution(r.json()["id"])
    assert done["lifecycle"]["status"] == "completed", done
    assert done["n_consensus"] == 7


# -- page size -------------------------------------------------------------------------------


def test_a_page_larger_than_200_is_422_on_every_list(api: Api) -> None:
    wf = api.create_workflow(DOUBLE)
    run = api.wait_run(api.start_run(wf["id"], {"x": 1})["id"])
    for path in (
        "/v1/workflows",
        "/v1/workflows/runs",
        f"/v1/workflows/runs/{run['id']}/steps",
        EXECUTIONS,
    ):
        page = api.get(path, params={"limit": 200})
        assert page.status_code == 200, (path, page.text)
        assert set(page.json()) == {"data", "has_more", "next_after", "list_metadata"}
        for limit in (201, 10_000, 0, -1):
            problem(api.get(path, params={"limit": limit}), 422, ["query", "limit"])


def test_the_default_page_is_50(api: Api) -> None:
    ids = [api.create_workflow(DOUBLE, f"wf{i}")["id"] for i in range(51)]
    page = api.get("/v1/workflows").json()
    assert [w["id"] for w in page["data"]] == ids[::-1][:50]
    assert page["has_more"] is True and page["next_after"] == ids[1]
