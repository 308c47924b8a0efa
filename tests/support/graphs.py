"""Workflow graphs as JSON, built tersely for tests; and the errors parse_graph names."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import Invalid
from engine.graph.parse import parse_graph


def block(bid: str, btype: str, **config: Any) -> dict[str, Any]:
    return {"id": bid, "type": btype, "config": config}


def edge(source: str, sh: str, target: str, th: str) -> dict[str, str]:
    return {"source": source, "source_handle": sh, "target": target, "target_handle": th}


def start(bid: str = "start", *handles: str) -> dict[str, Any]:
    return block(bid, "start", inputs={h: {"type": "json"} for h in (handles or ("doc",))})


def fn(bid: str, name: str = "identity", **config: Any) -> dict[str, Any]:
    return block(bid, "function", function=name, **config)


def linear() -> dict[str, Any]:
    return {
        "blocks": [start(), fn("f"), block("end", "end")],
        "edges": [edge("start", "doc", "f", "value"), edge("f", "output", "end", "result")],
    }


def errors_of(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(Invalid) as info:
        parse_graph(data)
    assert info.value.status == 422
    assert info.value.errors, "Invalid without field errors"
    return [(tuple(e.loc), e.msg) for e in info.value.errors]


def for_each_graph() -> dict[str, Any]:
    return {
        "blocks": [
            start("start", "items"),
            block("pages", "for_each", body=["double", "label"]),
            fn("double", "double"),
            fn("label", "identity"),
            block("end", "end"),
        ],
        "edges": [
            edge("start", "items", "pages", "items"),
            edge("pages", "item", "double", "value"),
            edge("double", "output", "label", "value"),
            edge("pages", "results", "end", "results"),
        ],
    }


def chain() -> dict[str, Any]:
    return {
        "blocks": [start(), fn("a"), fn("b"), fn("c"), fn("side"), block("end", "end")],
        "edges": [
            edge("start", "doc", "a", "value"),
            edge("a", "output", "b", "value"),
            edge("b", "output", "c", "value"),
            edge("start", "doc", "side", "value"),
            edge("c", "output", "end", "x"),
            edge("side", "output", "end", "y"),
        ],
    }
