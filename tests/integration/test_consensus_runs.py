"""Consensus runs end to end: real workers call an OpenAI-compatible server on loopback.

The chat server runs as its own process so both Celery worker processes reach it. It answers
by the request's ``seed`` (the consensus attempt index) and, per scenario, by the request's
``model``: each test names its own model in the block config, so the tests of this module
share one server without sharing answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from engine.db.models import ConsensusSample
from engine.db.session import Database
from tests.support.chat_server import SeedScript, chat_server_process, recorded_requests
from tests.support.fleet import Api, Fleet, by_step_id

pytestmark = pytest.mark.integration

DEFAULT_MODEL = "quorum-consensus-test"
CLASSIFY_MODEL = "classify-model"
SPLIT_MODEL = "split-model"
FLAKY_MODEL = "flaky-model"
DOWN_MODEL = "down-model"

# -- (a) an extraction whose five attempts disagree ------------------------------------------

INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "invoice_number": {"type": "string"},
        "vendor": {"type": "string"},
        "total": {"type": "number"},
        "paid": {"type": "boolean"},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "line_items": {
            "type": "array",
            "x-consensus-key": "sku",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
            },
        },
    },
}


def _invoice(
    number: str, vendor: str, total: float, paid: bool, currency: str, items: list[tuple[str, int]]
) -> dict[str, Any]:
    return {
        "invoice_number": number,
        "vendor": vendor,
        "total": total,
        "paid": paid,
        "currency": currency,
        "line_items": [{"sku": sku, "qty": qty} for sku, qty in items],
    }


# Seed i answers EXTRACT_ANSWERS[i]. Per field, the majority and its share of the 5 attempts:
#   invoice_number "INV-7" (seeds 0, 1, 3, 4 once normalised: "inv-7 " agrees)  4/5
#   vendor         "ACME GmbH" (case and a trailing "." do not count)           5/5
#   total          1234.5 (1240.0 is within the 1% tolerance; 999 and 1300 not) 3/5
#   paid           true                                                         4/5
#   currency       "EUR" (an enum: exact vote)                                  3/5
#   line_items     aligned by sku: A in 5/5 (qty 1 in 4 of them), B in 3/5 (qty 2 in 2 of
#                  those 3), C in 1/5 so dropped.
EXTRACT_ANSWERS = [
    _invoice("INV-7", "ACME GmbH", 1234.5, True, "EUR", [("A", 1), ("B", 2)]),
    _invoice("inv-7 ", "Acme GmbH.", 1240.0, True, "EUR", [("A", 1), ("B", 2)]),
    _invoice("INV-1", "ACME GmbH", 999.0, False, "USD", [("A", 1), ("B", 3)]),
    _invoice("INV-7", "acme gmbh", 1234.5, True, "GBP", [("A", 1), ("C", 5)]),
    _invoice("INV-7", "ACME GmbH", 1300.0, True, "EUR", [("A", 2)]),
]

# -- (b) a classifier, (c) a split, (d) provider errors ---------------------------------------

CLASSIFY_ANSWERS = [{"category": "invoice"}, {"category": "receipt"}, {"category": "invoice"}]

SPLIT_ANSWERS = [
    {"header": "ACME GmbH\nInvoice INV-7", "body": "2 x widget", "notes": ""},
    {"header": "ACME GmbH\nInvoice INV-7", "body": "2  x widget ", "notes": "pay soon"},
    {"header": "ACME GmbH", "body": "2 x widget", "notes": ""},
]

# Seed 2 always fails (HTTP 500, retried by the provider, then given up): 4 attempts remain.
FLAKY_ANSWERS = [{"total": 10}, {"total": 10}, {"total": 99}, {"total": 10}, {"total": 12}]

SCRIPT = SeedScript(
    answers=EXTRACT_ANSWERS,
    models={
        CLASSIFY_MODEL: SeedScript(answers=CLASSIFY_ANSWERS),
        SPLIT_MODEL: SeedScript(answers=SPLIT_ANSWERS),
        FLAKY_MODEL: SeedScript(answers=FLAKY_ANSWERS, statuses={"2": 500}),
        DOWN_MODEL: SeedScript(answers=[], statuses={"*": 503}),
    },
)

# Every answer is a little slow, so the attempts of one step visibly overlap in time.
DELAY_MS = 300
# ChatReply's default usage per successful answer.
PROMPT_TOKENS, COMPLETION_TOKENS = 11, 7


@pytest.fixture(scope="module")
def chat_url() -> Iterator[str]:
    with chat_server_process(SCRIPT, delay_ms=DELAY_MS) as url:
        yield url


@pytest.fixture(scope="module")
def fleet_extra_env(chat_url: str) -> dict[str, str]:
    return {
        "QUORUM_PROVIDER": "openai",
        "QUORUM_PROVIDER_BASE_URL": chat_url,
        "QUORUM_PROVIDER_MODEL": DEFAULT_MODEL,
        "QUORUM_PROVIDER_TIMEOUT_S": "10",
    }


# -- helpers ------------------------------------------------------------------------------


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


START = {"id": "start", "type": "start", "config": {"inputs": {"document": {"type": "json"}}}}
END = {"id": "end", "type": "end"}


def model_block(block_id: str, kind: str, n: int, **config: Any) -> dict[str, Any]:
    return {"id": block_id, "type": kind, "config": {"n_consensus": n, **config}}


def one_block_graph(block: dict[str, Any], handles: list[str]) -> dict[str, Any]:
    return {
        "blocks": [START, block, END],
        "edges": [
            edge("start", "document", block["id"], "document"),
            *(edge(block["id"], h, "end", h) for h in handles),
        ],
    }


def requests_for(chat_url: str, model: str) -> list[dict[str, Any]]:
    return [r for r in recorded_requests(chat_url) if r["body"].get("model") == model]


def attempts_of(fleet: Fleet, step_row_id: str) -> list[ConsensusSample]:
    db = Database(fleet.settings)
    try:
        with db.transaction() as s:
            rows = list(
                s.scalars(
                    select(ConsensusSample)
                    .where(ConsensusSample.owner_id == step_row_id)
                    .order_by(ConsensusSample.index)
                )
            )
            s.expunge_all()
            return rows
    finally:
        db.close()


def _overlap(a: ConsensusSample, b: ConsensusSample) -> bool:
    assert a.started_at and a.completed_at and b.started_at and b.completed_at
    start: datetime = max(a.started_at, b.started_at)
    end: datetime = min(a.completed_at, b.completed_at)
    return start < end


def usage(calls: int, model: str) -> dict[str, Any]:
    prompt, completion = calls * PROMPT_TOKENS, calls * COMPLETION_TOKENS
    bucket = {"total": prompt + completion, "prompt": prompt, "completion": completion}
    return {**bucket, "by_model": {model: bucket}, "by_provider": {"openai": bucket}}


# -- tests --------------------------------------------------------------------------------


def test_extract_with_five_disagreeing_attempts(api: Api, fleet: Fleet, chat_url: str) -> None:
    block = model_block(
        "extract_invoice",
        "extract",
        5,
        schema=INVOICE_SCHEMA,
        instructions="Read the invoice.",
    )
    wf = api.create_workflow(one_block_graph(block, ["output"]))
    document = "Invoice INV-7 from ACME GmbH, total EUR 1,234.50"
    run = api.wait_run(api.start_run(wf["id"], {"document": document})["id"])

    assert run["status"] == "completed", run
    assert run["termination_reason"] is None
    expected_value = {
        "invoice_number": "INV-7",
        "vendor": "ACME GmbH",
        "total": 1234.5,
        "paid": True,
        "currency": "EUR",
        "line_items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}],
    }
    assert run["io_pairs"][0]["output"] == {"output": expected_value}

    step = by_step_id(api.steps(run["id"]))["extract_invoice"]
    assert step["lifecycle"] == {"status": "completed"}
    assert step["n_consensus"] == 5
    assert step["outputs"] == {"output": {"type": "json", "data": expected_value}}
    assert step["consensus"] == {
        "value": expected_value,
        "likelihoods": {
            "invoice_number": 0.8,
            "vendor": 1.0,
            "total": 0.6,
            "paid": 0.8,
            "currency": 0.6,
            "line_items": [
                {"sku": 1.0, "qty": 0.8, "_presence": 1.0},
                {"sku": 1.0, "qty": 2 / 3, "_presence": 0.6},
            ],
        },
        "attempts": 5,
        "succeeded": 5,
        # Each attempt's raw answer, in attempt (seed) order.
        "answers": [{"answer": a} for a in EXTRACT_ANSWERS],
    }

    # Five model calls, each counted once (the reconciled answer is not a sixth).
    assert run["token_usage"] == usage(5, DEFAULT_MODEL)
    latency = run["latency_stats"]
    assert latency["total_calls"] == 5
    assert set(latency["by_model"]) == {DEFAULT_MODEL}
    assert latency["by_model"][DEFAULT_MODEL]["calls"] == 5
    # Every call waited DELAY_MS on the server.
    assert latency["avg_latency_ms"] >= DELAY_MS * 0.9

    # One request per attempt, with the attempt index as the seed.
    seen = requests_for(chat_url, DEFAULT_MODEL)
    assert sorted(r["body"]["seed"] for r in seen) == [0, 1, 2, 3, 4]
    assert {r["body"]["temperature"] for r in seen if r["body"]["seed"] > 0} == {0.7}

    # Five consensus-attempt rows, each a separate Celery task: both workers took some,
    # and some of them ran at the same time.
    attempts = attempts_of(fleet, step["id"])
    assert [a.index for a in attempts] == [0, 1, 2, 3, 4]
    assert {a.state for a in attempts} == {"completed"}
    assert [a.output for a in attempts] == EXTRACT_ANSWERS
    assert len({a.worker for a in attempts}) >= 2, [a.worker for a in attempts]
    assert any(_overlap(a, b) for i, a in enumerate(attempts) for b in attempts[i + 1 :])
    task_lines = [
        line
        for w in fleet.workers
        for line in w.lines
        if "quorum.consensus_sample.execute" in line and "received" in line
    ]
    for a in attempts:
        assert any(a.id in line for line in task_lines), a.id


def test_classifier_consensus_routes_to_the_chosen_category(api: Api, fleet: Fleet) -> None:
    classifier = model_block(
        "classify",
        "classifier",
        3,
        categories=["invoice", "receipt", "contract"],
        model=CLASSIFY_MODEL,
    )
    graph = {
        "blocks": [
            START,
            classifier,
            {"id": "on_invoice", "type": "function", "config": {"function": "identity"}},
            {"id": "on_receipt", "type": "function", "config": {"function": "identity"}},
            END,
        ],
        "edges": [
            edge("start", "document", "classify", "document"),
            edge("classify", "invoice", "on_invoice", "value"),
            edge("classify", "receipt", "on_receipt", "value"),
            edge("on_invoice", "output", "end", "invoice"),
            edge("on_receipt", "output", "end", "receipt"),
        ],
    }
    wf = api.create_workflow(graph)
    run = api.wait_run(api.start_run(wf["id"], {"document": "Invoice INV-7"})["id"])

    assert run["status"] == "completed", run
    assert run["io_pairs"][0]["output"] == {"invoice": "Invoice INV-7"}
    steps = by_step_id(api.steps(run["id"]))
    classify = steps["classify"]
    assert classify["active_output_handles"] == ["invoice"]
    assert classify["outputs"] == {"invoice": {"type": "json", "data": "Invoice INV-7"}}
    assert classify["consensus"] == {
        "value": {"category": "invoice"},
        "likelihoods": {"category": 2 / 3},
        "attempts": 3,
        "succeeded": 3,
        "answers": [{"answer": a} for a in CLASSIFY_ANSWERS],
    }
    assert steps["on_invoice"]["lifecycle"]["status"] == "completed"
    assert steps["on_receipt"]["lifecycle"] == {"status": "skipped", "reason": "inactive_inputs"}
    assert run["token_usage"] == usage(3, CLASSIFY_MODEL)
    assert run["latency_stats"]["total_calls"] == 3


def test_split_consensus_leaves_an_empty_part_inactive(
    api: Api, fleet: Fleet, chat_url: str
) -> None:
    splitter = model_block(
        "split", "split", 3, parts=["header", "body", "notes"], model=SPLIT_MODEL
    )
    graph = {
        "blocks": [
            START,
            splitter,
            {"id": "read_notes", "type": "function", "config": {"function": "identity"}},
            END,
        ],
        "edges": [
            edge("start", "document", "split", "document"),
            edge("split", "header", "end", "header"),
            edge("split", "body", "end", "body"),
            edge("split", "notes", "read_notes", "value"),
            edge("read_notes", "output", "end", "notes"),
        ],
    }
    wf = api.create_workflow(graph)
    run = api.wait_run(api.start_run(wf["id"], {"document": "whatever"})["id"])

    assert run["status"] == "completed", run
    # Two of three attempts found no notes: the reconciled part is empty, so inactive.
    assert run["io_pairs"][0]["output"] == {
        "header": "ACME GmbH\nInvoice INV-7",
        "body": "2 x widget",
    }
    steps = by_step_id(api.steps(run["id"]))
    split = steps["split"]
    assert split["active_output_handles"] == ["header", "body"]
    assert split["consensus"] == {
        "value": {"header": "ACME GmbH\nInvoice INV-7", "body": "2 x widget", "notes": ""},
        "likelihoods": {"header": 2 / 3, "body": 1.0, "notes": 2 / 3},
        "attempts": 3,
        "succeeded": 3,
        "answers": [{"answer": a} for a in SPLIT_ANSWERS],
    }
    assert steps["read_notes"]["lifecycle"] == {"status": "skipped", "reason": "inactive_inputs"}
    assert sorted(r["body"]["seed"] for r in requests_for(chat_url, SPLIT_MODEL)) == [0, 1, 2]


def test_one_failing_attempt_leaves_the_others_to_agree(
    api: Api, fleet: Fleet, chat_url: str
) -> None:
    schema = {"type": "object", "properties": {"total": {"type": "integer"}}}
    block = model_block("extract_total", "extract", 5, schema=schema, model=FLAKY_MODEL)
    wf = api.create_workflow(one_block_graph(block, ["output"]))
    run = api.wait_run(api.start_run(wf["id"], {"document": "Total: 10"})["id"])

    assert run["status"] == "completed", run
    assert run["io_pairs"][0]["output"] == {"output": {"total": 10}}
    step = by_step_id(api.steps(run["id"]))["extract_total"]
    # Shares of the 4 attempts that answered: 10 (seeds 0, 1, 3) against 12 and nothing.
    raw = step["consensus"].pop("answers")
    assert step["consensus"] == {
        "value": {"total": 10},
        "likelihoods": {"total": 0.75},
        "attempts": 5,
        "succeeded": 4,
    }
    # The failed attempt's place holds its error instead of an answer.
    assert [r.get("answer") for r in raw] == [
        {"total": 10},
        {"total": 10},
        None,
        *FLAKY_ANSWERS[3:],
    ]
    assert raw[2]["error"]["type"] == "provider_http_error"
    assert "HTTP 500" in raw[2]["error"]["message"]
    attempts = attempts_of(fleet, step["id"])
    assert [(a.index, a.state) for a in attempts] == [
        (0, "completed"),
        (1, "completed"),
        (2, "error"),
        (3, "completed"),
        (4, "completed"),
    ]
    assert attempts[2].error_type == "provider_http_error"
    assert "HTTP 500" in (attempts[2].error_message or "")
    # The failed call is no usage: only the four answers count.
    assert run["token_usage"] == usage(4, FLAKY_MODEL)
    assert run["latency_stats"]["total_calls"] == 4
    # A 500 is retryable: the provider tried seed 2 three times (1 + max_retries 2).
    seeds = Counter(r["body"]["seed"] for r in requests_for(chat_url, FLAKY_MODEL))
    assert seeds == {0: 1, 1: 1, 2: 3, 3: 1, 4: 1}


def test_all_attempts_failing_fails_the_run(api: Api) -> None:
    schema = {"type": "object", "properties": {"total": {"type": "integer"}}}
    block = model_block("extract_total", "extract", 3, schema=schema, model=DOWN_MODEL)
    wf = api.create_workflow(one_block_graph(block, ["output"]))
    run = api.wait_run(api.start_run(wf["id"], {"document": "Total: 10"})["id"])

    assert run["status"] == "failed", run
    assert run["termination_reason"] == "execution_error"
    assert run["error"]["type"] == "consensus_failed"
    assert run["error"]["block_id"] == "extract_total"
    step = by_step_id(api.steps(run["id"]))["extract_total"]
    assert step["lifecycle"]["status"] == "error"
    assert step["lifecycle"]["error"]["type"] == "consensus_failed"
    assert step["consensus"] is None
    assert run["token_usage"]["total"] == 0
    assert run["latency_stats"]["total_calls"] == 0
    assert run["io_pairs"][0]["output"] is None
