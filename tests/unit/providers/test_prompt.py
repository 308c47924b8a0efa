"""The prompt both providers send."""

from __future__ import annotations

from engine.providers.base import ModelRequest
from engine.providers.prompt import render_prompt
from tests.support.invoices import INVOICE_SCHEMA


def test_render_prompt_carries_instructions_schema_and_document() -> None:
    request = ModelRequest(
        task="classify",
        instructions="Prefer receipts.",
        document={"vendor": "ACME", "amount": 3},
        json_schema=INVOICE_SCHEMA,
    )
    system, user = render_prompt(request)
    assert "Prefer receipts." in system
    assert "category" in system
    assert '"vendor": "ACME"' in user
    assert '"invoice_number"' in user
    assert (
        "Instructions"
        not in render_prompt(
            ModelRequest(task="split", instructions="", document="x", json_schema={})
        )[0]
    )
