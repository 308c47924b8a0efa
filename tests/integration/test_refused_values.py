"""Values PostgreSQL refuses fail their block at once, with real workers on real PostgreSQL.

Before, ``Infinity`` in a ``jsonb`` column (or a NUL character, or a string longer than its
column) was retried like a lost connection: the block ran again on every retry for minutes,
and the row was left ``running`` afterwards. Now the block ends ``error`` with
``invalid_output`` naming the value, after one call.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.fleet import Api, Fleet, by_step_id
from tests.support.poison import SPEC, calls

pytestmark = pytest.mark.integration

INF_DOCUMENT = "total: 1" + "0" * 400  # the local provider reads float("inf")
SCHEMA = {"type": "object", "properties": {"total": {"type": "number"}}}


@pytest.fixture(scope="module")
def fleet_extra_env() -> dict[str, str]:
    return {"QUORUM_FUNCTIONS": SPEC}


def _graph(block: dict[str, Any], handle: str) -> dict[str, Any]:
    return {
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"doc": {"type": "json"}}}},
            block,
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"source": "start", "source_handle": "doc", "target": "b", "target_handle": handle},
            {"source": "b", "source_handle": "output", "target": "end", "target_handle": "out"},
        ],
    }


def _step_error(api: Api, block: dict[str, Any], handle: str, doc: Any) -> dict[str, Any]:
    """Run ``block`` on ``doc``; the run must fail on it. Returns the step's error."""
    wf = api.create_workflow(_graph(block, handle))
    run = api.wait_run(api.start_run(wf["id"], {"doc": doc})["id"], timeout=30)
    assert (run["status"], run["termination_reason"]) == ("failed", "execution_error"), run
    lifecycle = by_step_id(api.steps(run["id"]))["b"]["lifecycle"]
    # Keyed "state" today, "status" in the contract's wording: accept either.
    assert lifecycle.get("status", lifecycle.get("state")) == "error", lifecycle
    assert lifecycle["error"]["type"] == "invalid_output", lifecycle
    return dict(lifecycle["error"])


@pytest.mark.parametrize(
    ("value", "named"),
    [("inf", "the number inf at bad"), ("nul", "a NUL character")],
)
def test_a_function_output_postgresql_refuses_fails_after_one_call(
    api: Api, fleet: Fleet, value: str, named: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    block = {
        "id": "b",
        "type": "function",
        "config": {"function": "poison", "params": {"value": value, "tag": tag}},
    }
    step = _step_error(api, block, "value", 1)
    assert named in step["message"]
    assert calls(fleet.env["QUORUM_TEST_EFFECTS_DIR"], tag) == 1


def test_an_extract_answer_of_infinity_fails_the_step(api: Api) -> None:
    block = {"id": "b", "type": "extract", "config": {"schema": SCHEMA}}
    step = _step_error(api, block, "document", INF_DOCUMENT)
    assert "the number inf at output.total" in step["message"]


def test_a_write_postgresql_refuses_fails_the_step_in_a_fresh_transaction(api: Api) -> None:
    # The screen passes this one: the model's name is fine as JSON, but the usage record's
    # column holds 200 characters. PostgreSQL refuses the settle's write; the step is
    # failed in a new transaction with the database's reason instead of being retried.
    block = {"id": "b", "type": "extract", "config": {"schema": SCHEMA, "model": "m" * 250}}
    step = _step_error(api, block, "document", "total: 12")
    assert "value too long for type character varying(200)" in step["message"]
