"""The local provider's heuristics: schema-shaped, deterministic answers read off the text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.providers.base import ModelRequest
from engine.providers.local import LocalProvider
from engine.providers.prompt import render_prompt
from tests.support.invoices import INVOICE, INVOICE_SCHEMA

SPLIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "terms_and_conditions": {"type": "string"},
        "signatures": {"type": "string"},
    },
}


def complete(task: str, document: Any, schema: dict[str, Any], **extra: Any) -> Any:
    request = ModelRequest(
        task=task, instructions="", document=document, json_schema=schema, **extra
    )
    return LocalProvider().complete(request).data


def test_extract_coerces_each_property_type() -> None:
    assert complete("extract", INVOICE, INVOICE_SCHEMA) == {
        "invoice_number": "INV-0042",
        "total_amount": 1234.5,
        "item_count": 12,
        "paid": True,
        "currency": "USD",
        "status": "paid",
        "tags": ["urgent", "north", "q3"],
        "customer": {"customer_name": "Wile E. Coyote", "city": "Springfield"},
        "notes": None,
        "due_date": "",
        "discount": 0,
        "po_number": None,
        "approved": False,
        "lines": [],
        "meta": {},
    }


def test_extract_integer_keeps_the_whole_part_and_boolean_reads_no() -> None:
    schema = {
        "type": "object",
        "properties": {"total": {"type": "integer"}, "shipped": {"type": "boolean"}},
    }
    text = "TOTAL: 1,234.50 EUR\nshipped = No"
    assert complete("extract", text, schema) == {"total": 1234, "shipped": False}


def test_extract_reads_a_json_document() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "active": {"type": "boolean"},
            "roles": {"type": "array", "items": {"type": "string"}},
        },
    }
    document = {"name": "Alice", "age": 30, "active": True, "roles": ["admin", "dev"]}
    assert complete("extract", document, schema) == {
        "name": "Alice",
        "age": 30,
        "active": True,
        "roles": ["admin", "dev"],
    }


def test_classify_picks_the_most_mentioned_category() -> None:
    schema = {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": ["invoice", "receipt", "purchase_order"]},
            "reason": {"type": "string"},
        },
    }
    text = "Receipt no. 7. This receipt confirms payment; keep the RECEIPT. See invoice 3."
    assert complete("classify", text, schema) == {"category": "receipt", "reason": ""}
    assert complete("classify", "Purchase order 12, purchase-order copy", schema)["category"] == (
        "purchase_order"
    )


@pytest.mark.parametrize(
    "text",
    ["an invoice and a receipt", "nothing relevant here", "reinvoiced receipts"],
    ids=["tie", "none", "no-partial-words"],
)
def test_classify_falls_back_to_the_first_category(text: str) -> None:
    schema = {
        "type": "object",
        "properties": {"category": {"type": "string", "enum": ["invoice", "receipt"]}},
    }
    assert complete("classify", text, schema) == {"category": "invoice"}


def test_split_by_headings() -> None:
    text = (
        "Preamble that belongs to no part.\n"
        "# Summary\n"
        "First line.\n"
        "\n"
        "Second line.\n"
        "Terms and Conditions:\n"
        "Pay in 30 days.\n"
        "## unrelated heading stays in the part\n"
    )
    assert complete("split", text, SPLIT_SCHEMA) == {
        "summary": "First line.\n\nSecond line.",
        "terms_and_conditions": "Pay in 30 days.\n## unrelated heading stays in the part",
        "signatures": "",
    }


def test_split_by_paragraphs_evenly_in_order() -> None:
    text = "p1\n\np2 line\np2 more\n\n\np3\n\np4\n\np5"
    assert complete("split", text, SPLIT_SCHEMA) == {
        "summary": "p1\n\np2 line\np2 more",
        "terms_and_conditions": "p3\n\np4",
        "signatures": "p5",
    }
    assert complete("split", "only one", SPLIT_SCHEMA) == {
        "summary": "only one",
        "terms_and_conditions": "",
        "signatures": "",
    }


def test_local_answers_are_deterministic_and_counted() -> None:
    provider = LocalProvider()
    first = ModelRequest(
        task="extract", instructions="Be exact.", document=INVOICE, json_schema=INVOICE_SCHEMA
    )
    later = ModelRequest(
        task="extract",
        instructions="Be exact.",
        document=INVOICE,
        json_schema=INVOICE_SCHEMA,
        sample_index=4,
        model="local-2",
    )
    a, b = provider.complete(first), provider.complete(later)

    assert a.data == b.data
    assert (a.provider, a.model, b.model) == ("local", "local-1", "local-2")
    system, user = render_prompt(first)
    assert a.prompt_tokens == len(system.split()) + len(user.split())
    assert a.completion_tokens == len(json.dumps(a.data, ensure_ascii=False).split())
    assert a.prompt_tokens == b.prompt_tokens > 0
    assert isinstance(a.latency_ms, int) and a.latency_ms >= 0
