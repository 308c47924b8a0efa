"""A value the database cannot store fails its block at once (``invalid_output``), once.

Runs on SQLite with the in-process dispatcher: SQLite itself would store most of these
values (and hand them back changed), so these tests show the check happens before the
write, the same on every database. The PostgreSQL refusals themselves are exercised in
tests/integration/test_refused_values.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import errors as pg
from sqlalchemy.exc import DataError, InternalError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from engine.db.models import BlockExecution, ConsensusSample
from engine.dbfaults import DatabaseAway, database_away, refused_value
from engine.execute import BlockFailed, Outcome
from engine.executions import create_execution
from engine.functions import FunctionRegistry
from engine.providers.base import ModelRequest, ModelResponse
from engine.refusals import settle_screened
from engine.settings import Settings
from engine.storable import STEP_ID_LENGTH, unstorable
from engine.testing import InProcessEngine
from engine.workflows import patch_block

START = {"id": "start", "type": "start", "config": {"inputs": {"doc": {"type": "json"}}}}
INF_DOCUMENT = "total: 1" + "0" * 400  # parses to float("inf")
SCHEMA = {
    "type": "object",
    "properties": {"total": {"type": "number"}, "vendor": {"type": "string"}},
}


def edge(source: str, sh: str, target: str, th: str) -> dict[str, str]:
    return {"source": source, "source_handle": sh, "target": target, "target_handle": th}


def one_block(block: dict[str, Any], handle: str = "value") -> dict[str, Any]:
    return {
        "blocks": [START, block, {"id": "end", "type": "end", "config": {}}],
        "edges": [
            edge("start", "doc", block["id"], handle),
            edge(block["id"], "output", "end", "result"),
        ],
    }


POISON: dict[str, Any] = {
    "one": 1,
    "inf": float("inf"),
    "huge": float("1e999"),
    "nan": float("nan"),
    "nul": "a\x00b",
    "surrogate": "\ud800",
    "set": {1, 2},
}


@pytest.fixture
def calls() -> Counter[str]:
    return Counter()


@pytest.fixture
def engine(tmp_path: Path, calls: Counter[str]) -> Iterator[InProcessEngine]:
    functions = FunctionRegistry()

    def poison(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        calls["poison"] += 1
        return {"ok": 1, "bad": [1, {"value": POISON[params["value"]]}]}

    def boom(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        calls["boom"] += 1
        raise ValueError("a NUL \x00 in the message")

    functions.register("poison", poison)
    functions.register("boom", boom)
    functions.register("pair", lambda inputs: [inputs["value"]])
    e = InProcessEngine(Settings(data_dir=str(tmp_path)), functions=functions)
    yield e
    e.close()


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("inf", "the number inf at bad[1].value"),
        ("nan", "the number NaN at bad[1].value"),
        ("nul", "a NUL character (\\u0000) in the string at bad[1].value"),
        ("surrogate", "a lone surrogate (\\ud800) in the string at bad[1].value"),
        ("set", "a set at bad[1].value"),
    ],
)
def test_a_function_output_the_database_refuses_fails_its_step_once(
    engine: InProcessEngine, calls: Counter[str], value: str, named: str
) -> None:
    block = {"id": "f", "type": "function", "config": {"function": "poison"}}
    block["config"]["params"] = {"value": value}
    run_id = engine.run_to_rest(one_block(block), {"doc": 1})
    run = engine.run(run_id)
    assert (run.status, run.termination_reason) == ("failed", "execution_error")
    step = engine.steps(run_id)["f"]
    assert (step.state, step.error_type) == ("error", "invalid_output")
    assert named in (step.error_message or "")
    assert calls["poison"] == 1  # failed at once: not retried, not run again


def test_an_exception_message_with_a_nul_is_stored_written_out(engine: InProcessEngine) -> None:
    block = {"id": "f", "type": "function", "config": {"function": "boom"}}
    run_id = engine.run_to_rest(one_block(block), {"doc": 1})
    step = engine.steps(run_id)["f"]
    assert step.error_message == "a NUL \\u0000 in the message"
    assert engine.run(run_id).error["message"] == "a NUL \\u0000 in the message"


def test_a_model_answer_of_infinity_fails_the_extract(engine: InProcessEngine) -> None:
    block = {"id": "x", "type": "extract", "config": {"schema": SCHEMA}}
    run_id = engine.run_to_rest(one_block(block, "document"), {"doc": INF_DOCUMENT})
    step = engine.steps(run_id)["x"]
    assert (step.state, step.error_type) == ("error", "invalid_output")
    assert "the number inf at output.total" in (step.error_message or "")
    assert engine.run(run_id).status == "failed"


class NulAnswers:
    """A model that answers with a NUL character in a string field."""

    name = "nul"

    def complete(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(
            data={"vendor": "a\x00b"},
            provider="nul",
            model="nul-1",
            prompt_tokens=1,
            completion_tokens=1,
            latency_ms=1,
        )

    def close(self) -> None:
        pass


def test_consensus_samples_whose_answer_holds_a_nul_fail_and_the_step_with_them(
    tmp_path: Path,
) -> None:
    engine = InProcessEngine(Settings(data_dir=str(tmp_path)), provider=NulAnswers())
    block = {"id": "x", "type": "extract", "config": {"schema": SCHEMA, "n_consensus": 3}}
    run_id = engine.run_to_rest(one_block(block, "document"), {"doc": "vendor: a"})
    step = engine.steps(run_id)["x"]
    assert step.state == "error"
    with engine.db.sessions() as s:
        attempts = s.query(ConsensusSample).filter_by(owner_id=step.id).all()
    assert [(a.state, a.error_type) for a in attempts] == [("error", "invalid_output")] * 3
    assert all("at answer.vendor" in (a.error_message or "") for a in attempts)
    assert engine.run(run_id).status == "failed"
    engine.close()


def test_run_inputs_with_a_nul_fail_the_start_block(engine: InProcessEngine) -> None:
    block = {"id": "f", "type": "function", "config": {"function": "pair"}}
    run_id = engine.run_to_rest(one_block(block), {"doc": "a\x00b"})
    start = engine.steps(run_id)["start"]
    assert (start.state, start.error_type) == ("error", "invalid_output")


def test_a_block_execution_with_an_unstorable_output_errors_at_once(
    engine: InProcessEngine, calls: Counter[str]
) -> None:
    block = {"id": "f", "type": "function", "config": {"function": "poison"}}
    block["config"]["params"] = {"value": "one"}
    run_id = engine.run_to_rest(one_block(block), {"doc": 1})
    assert engine.run(run_id).status == "completed"
    wf_id = engine.run(run_id).workflow_id
    with engine.db.transaction() as s:
        config = {"function": "poison", "params": {"value": "huge"}}
        patch_block(s, engine.org_id, wf_id, "f", config=config)
        ex, work = create_execution(s, engine.org_id, run_id=run_id, block_id="f")
        execution_id = ex.id
    engine.dispatcher.dispatch(work)
    engine.drain()
    with engine.db.sessions() as s:
        ex = s.get(BlockExecution, execution_id)
        assert ex is not None
        assert (ex.state, ex.error_type) == ("error", "invalid_output")
        assert "the number inf at bad[1].value" in (ex.error_message or "")
    assert calls["poison"] == 2  # the run's step, then the execution: once each


def _nested_for_each(depth: int) -> dict[str, Any]:
    """``depth`` for_each blocks with 64-character ids, each the body of the one before."""
    ids = [f"e{i}{'x' * 62}" for i in range(depth)]
    blocks: list[dict[str, Any]] = [
        START,
        {"id": "wrap", "type": "function", "config": {"function": "pair"}},
    ]
    edges = [edge("start", "doc", "wrap", "value"), edge("wrap", "output", ids[0], "items")]
    for i, fe in enumerate(ids):
        inner = ids[i + 1] if i + 1 < depth else "leaf"
        blocks.append({"id": fe, "type": "for_each", "config": {"body": [inner]}})
        edges.append(edge(fe, "item", inner, "items" if i + 1 < depth else "value"))
    blocks.append({"id": "leaf", "type": "function", "config": {"function": "pair"}})
    blocks.append({"id": "end", "type": "end", "config": {}})
    edges.append(edge(ids[0], "results", "end", "all"))
    return {"blocks": blocks, "edges": edges}


def test_a_step_id_longer_than_its_column_fails_the_step_that_would_create_it(
    engine: InProcessEngine,
) -> None:
    # Six nested 64-character for_each ids: the innermost steps' ids pass 400 characters.
    items: Any = 1
    for _ in range(6):
        items = [items]
    run_id = engine.run_to_rest(_nested_for_each(6), {"doc": items})
    steps = engine.steps(run_id)
    assert max(len(k) for k in steps) <= STEP_ID_LENGTH
    failed = [s for s in steps.values() if s.state == "error"]
    assert len(failed) == 1 and failed[0].error_type == "invalid_output"
    assert f"more than the {STEP_ID_LENGTH} a step id may have" in (failed[0].error_message or "")
    assert engine.run(run_id).status == "failed"


# -- classifying database errors ----------------------------------------------------------


def _wrapped(cls: type[Exception], orig: Exception) -> Exception:
    return cls("INSERT ...", {}, orig)  # type: ignore[call-arg]


def test_only_connection_level_errors_mean_the_database_is_away() -> None:
    assert database_away(_wrapped(OperationalError, pg.AdminShutdown("terminating")))
    assert database_away(PoolTimeout("QueuePool limit reached"))
    assert database_away(DatabaseAway("away"))
    refused = _wrapped(DataError, pg.InvalidTextRepresentation("invalid input syntax for json"))
    assert not database_away(refused)
    assert refused_value(refused) == "invalid input syntax for json"
    assert refused_value(_wrapped(OperationalError, pg.AdminShutdown("x"))) is None


def test_a_refusal_masked_by_the_aborted_transaction_is_still_a_refusal() -> None:
    # PostgreSQL fails every later statement of the transaction; a ``finally`` that writes
    # raises that error, with the refusal as its context.
    try:
        try:
            raise _wrapped(DataError, pg.StringDataRightTruncation("value too long"))
        finally:
            raise _wrapped(InternalError, pg.InFailedSqlTransaction("transaction is aborted"))
    except InternalError as masked:
        assert refused_value(masked) == "value too long"
        assert not database_away(masked)


def test_a_refused_settle_is_settled_again_as_the_failure_in_a_fresh_call() -> None:
    seen: list[Any] = []

    def settle(result: Any) -> None:
        seen.append(result)
        if len(seen) == 1:
            raise _wrapped(DataError, pg.StringDataRightTruncation("value too long for type"))

    settle_screened(settle, Outcome(outputs={"output": 1}, active=("output",)), row="r1")
    assert isinstance(seen[0], Outcome)
    assert isinstance(seen[1], BlockFailed) and seen[1].error_type == "invalid_output"
    assert "value too long for type" in seen[1].message


def test_a_connection_error_in_a_settle_is_not_settled_again() -> None:
    seen: list[Any] = []

    def settle(result: Any) -> None:
        seen.append(result)
        raise _wrapped(OperationalError, pg.AdminShutdown("terminating connection"))

    with pytest.raises(OperationalError):
        settle_screened(settle, Outcome(outputs={"output": 1}, active=("output",)), row="r1")
    assert len(seen) == 1


def test_unstorable_finds_the_first_bad_value_and_passes_json() -> None:
    assert unstorable({"a": [1, 2.5, "x", None, True, {"b": []}]}) is None
    assert unstorable({"a": {"b\x00": 1}}) == "a NUL character (\\u0000) in a key at a"
    assert unstorable({1: "x"}) == "a int key at the top"
