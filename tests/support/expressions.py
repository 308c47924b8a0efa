"""What a router condition is evaluated against in the expression tests."""

from __future__ import annotations

from typing import Any

VARIABLES: dict[str, Any] = {
    "input": {
        "score": 0.82,
        "count": 3,
        "status": "Approved",
        "name": "  Invoice 42 ",
        "tags": ["urgent", "finance"],
        "vendor": {"name": "ACME", "country": "DE"},
        "empty": "",
        "nothing": None,
    },
    "threshold": 0.5,
    "items": [10, 20, 30],
    "big": "x" * 60_000,
}
