"""A small invoice as text and the schema a model is asked to fill from it."""

from __future__ import annotations

from typing import Any

INVOICE = """\
ACME Corp - Invoice

Invoice Number: INV-0042
Total amount = $1,234.50
Item-count: 12 items
Paid: yes
Currency: usd
Status: paid in full
Tags: urgent, north , q3
Customer name: Wile E. Coyote
City: Springfield
"""


INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "invoice_number": {"type": "string"},
        "total_amount": {"type": "number"},
        "item_count": {"type": "integer"},
        "paid": {"type": "boolean"},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "status": {"type": "string", "enum": ["unpaid", "paid"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "customer": {
            "type": "object",
            "properties": {"customer_name": {"type": "string"}, "city": {"type": "string"}},
        },
        "notes": {"type": ["string", "null"]},
        "due_date": {"type": "string"},
        "discount": {"type": "number"},
        "po_number": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "approved": {"type": "boolean"},
        "lines": {"type": "array", "items": {"type": "object"}},
        "meta": {"type": "object"},
    },
}
