"""What blocks answer, checked before it is stored: model answers against the block's schema
(consensus reconciles only the valid ones), and function results that are not JSON.

Real workers call a chat-completions server on loopback that answers by ``seed`` (the
consensus attempt index) and by ``model`` (one scenario per model name).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from engine.db.models import ConsensusSample
from engine.db.session import Database
from tests.support.chat_server import SeedScript, chat_server_process
from tests.support.fleet import Api, Fleet, by_step_id

pytestmark = pytest.mark.integration

EXECUTIONS = "/v1/workflows/blocks/executions"
SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "string"}, "b": {"type": "number"}},
    "required": ["a"],
}
LOTS, GOOD = {"a": "x", "b": "lots"}, {"a": "x", "b": 2}
WRONG_TYPE = "at b: 'lots' is not of type 'number'"
SCRIPT = SeedScript(
    answers=[GOOD],
    models={
        # Two answers out of three do not fit: b is no number.
        "lots": SeedScript(answers=[LOTS, GOOD, LOTS]),
        "never": SeedScript(answers=[LOTS]),
        "classify": SeedScript(answers=[{"category": "letter"}, {"category": "receipt"}]),
    },
)
# ChatReply's default usage per answer.
TOKENS_PER_CALL = 11 + 7


@pytest.fixture(scope="module")
def chat_url() -> Iterator[str]:
    with chat_server_process(SCRIPT) as url:
        yield url


@pytest.fixture(scope="module")
def fleet_extra_env(chat_url: str) -> dict[str, str]:
    return {
        "QUORUM_PROVIDER": "openai",
        "QUORUM_PROVIDER_BASE_URL": chat_url,
        "QUORUM_PROVIDER_MODEL": "default",
        "QUORUM_PROVIDER_TIMEOUT_S": "10",
    }


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


def one_block(block: dict[str, Any], handles: list[str], *, input_handle: str) -> dict[str, Any]:
    return {
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
            block,
            {"id": "end", "type": "end"},
        ],
        "edges": [
            edge("start", "x", block["id"], input_handle),
            *(edge(block["id"], h, "end", h) for h in handles),
        ],
    }


def extract(model: str, n: int) -> dict[str, Any]:
    config = {"schema": SCHEMA, "model": model, "n_consensus": n}
    return {"id": "read", "type": "extract", "config": config}


def run_of(api: Api, block: dict[str, Any], handles: list[str], **kw: str) -> dict[str, Any]:
    wf = api.create_workflow(one_block(block, handles, input_handle=kw.get("handle", "document")))
    return api.wait_run(api.start_run(wf["id"], {"x": "a: x\nb: 2"})["id"])


def attempts_of(fleet: Fleet, owner_id: str) -> list[ConsensusSample]:
    db = Database(fleet.settings)
    try:
        with db.transaction() as s:
            rows = list(
                s.scalars(
                    select(ConsensusSample)
                    .where(ConsensusSample.owner_id == owner_id)
                    .order_by(ConsensusSample.index)
                )
            )
            s.expunge_all()
            return rows
    finally:
        db.close()


def test_answers_that_do_not_fit_are_failed_attempts(api: Api, fleet: Fleet) -> None:
    run = run_of(api, extract("lots", 3), ["output"])
    assert run["status"] == "completed", run
    assert run["io_pairs"][0]["output"] == {"output": GOOD}
    step = by_step_id(api.steps(run["id"]))["read"]
    assert step["consensus"]["attempts"] == 3 and step["consensus"]["succeeded"] == 1
    assert step["consensus"]["value"] == GOOD
    # The API shows each attempt's raw answer, or why it failed.
    raw = step["consensus"]["answers"]
    assert raw[1] == {"answer": GOOD}
    for failed_raw in (raw[0], raw[2]):
        assert failed_raw["error"]["type"] == "bad_model_answer"
        assert WRONG_TYPE in failed_raw["error"]["message"]
    attempts = attempts_of(fleet, step["id"])
    assert [a.state for a in attempts] == ["error", "completed", "error"]
    for failed in (attempts[0], attempts[2]):
        assert failed.error_type == "bad_model_answer"
        assert WRONG_TYPE in (failed.error_message or "")
        assert failed.output is None
    # Every call was made and answered: all three count as usage.
    assert run["token_usage"]["total"] == 3 * TOKENS_PER_CALL
    assert run["latency_stats"]["total_calls"] == 3


def test_no_answer_fits_fails_the_step_and_the_run(api: Api) -> None:
    for n in (3, 1):
        run = run_of(api, extract("never", n), ["output"])
        assert (run["status"], run["termination_reason"]) == ("failed", "execution_error"), run
        assert run["error"]["type"] == "bad_model_answer" and run["error"]["block_id"] == "read"
        life = by_step_id(api.steps(run["id"]))["read"]["lifecycle"]
        assert life["status"] == "error" and life["error"]["type"] == "bad_model_answer"
        assert WRONG_TYPE in life["message"]
        if n == 3:
            assert life["message"].startswith("none of the 3 answers fits the schema")
        assert run["token_usage"]["total"] == n * TOKENS_PER_CALL


def test_a_classifier_answer_outside_its_categories_is_a_failed_attempt(
    api: Api, fleet: Fleet
) -> None:
    block = {
        "id": "kind",
        "type": "classifier",
        "config": {"categories": ["invoice", "receipt"], "model": "classify", "n_consensus": 3},
    }
    run = run_of(api, block, ["invoice", "receipt"])
    assert run["status"] == "completed", run
    step = by_step_id(api.steps(run["id"]))["kind"]
    assert step["active_output_handles"] == ["receipt"]
    assert step["consensus"]["succeeded"] == 1
    failed = [a for a in attempts_of(fleet, step["id"]) if a.state == "error"]
    assert [a.error_type for a in failed] == ["bad_model_answer", "bad_model_answer"]
    assert "'letter' is not one of ['invoice', 'receipt']" in (failed[0].error_message or "")


def test_block_executions_check_answers_too(api: Api, fleet: Fleet) -> None:
    run = run_of(api, extract("default", 1), ["output"])
    assert run["status"] == "completed", run
    r = api.http.patch(
        f"/v1/workflows/{run['workflow_id']}/draft/blocks/read",
        json={"config": {"schema": SCHEMA, "model": "lots"}},
    )
    assert r.status_code == 200, r.text
    created = api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "read", "n_consensus": 3})
    assert created.status_code == 202, created.text
    ex = api.wait_execution(created.json()["id"])
    assert ex["lifecycle"] == {"status": "completed"}
    assert ex["handle_outputs"] == {"output": {"type": "json", "data": GOOD}}
    assert ex["consensus"]["succeeded"] == 1
    assert [a.state for a in attempts_of(fleet, ex["id"])] == ["error", "completed", "error"]

    api.http.patch(
        f"/v1/workflows/{run['workflow_id']}/draft/blocks/read",
        json={"config": {"schema": SCHEMA, "model": "never"}},
    ).raise_for_status()
    created = api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "read"})
    failed = api.wait_execution(created.json()["id"])
    assert failed["lifecycle"]["status"] == "error"
    assert failed["lifecycle"]["error"]["type"] == "bad_model_answer"
    assert WRONG_TYPE in failed["lifecycle"]["message"]


def test_a_function_result_that_is_not_json_fails_its_step(api: Api) -> None:
    block = {"id": "f", "type": "function", "config": {"function": "as_set"}}
    run = run_of(api, block, ["output"], handle="value")
    assert (run["status"], run["termination_reason"]) == ("failed", "execution_error"), run
    assert run["error"]["type"] == "invalid_output" and run["error"]["block_id"] == "f"
    life = by_step_id(api.steps(run["id"]))["f"]["lifecycle"]
    assert life["status"] == "error" and life["error"]["type"] == "invalid_output"
    assert life["message"] == "'as_set' returned a value that is not storable JSON: a set at seen"

    created = api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "f"})
    assert created.status_code == 202, created.text
    ex = api.wait_execution(created.json()["id"])
    assert ex["lifecycle"]["error"] == {
        "type": "invalid_output",
        "message": "'as_set' returned a value that is not storable JSON: a set at seen",
    }
