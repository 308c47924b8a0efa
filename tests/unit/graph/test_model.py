"""The graph's topology: loops, ancestors, for_each bodies."""

from __future__ import annotations

from engine.graph.model import Graph
from engine.graph.parse import parse_graph
from tests.support.graphs import block, chain, edge, fn, for_each_graph, linear, start


def test_cyclic_blocks() -> None:
    g = parse_graph(
        {
            "blocks": [
                start(),
                fn("pre"),
                block("r", "router", routes=[{"handle": "a", "when": "true"}], default="b"),
                fn("x"),
                fn("y"),
                block("r2", "router", routes=[{"handle": "again", "when": "false"}]),
                block("end", "end"),
            ],
            "edges": [
                edge("start", "doc", "pre", "value"),
                edge("pre", "output", "r", "input"),
                edge("r", "a", "x", "value"),
                edge("x", "output", "y", "value"),
                edge("y", "output", "r", "input"),
                edge("r", "b", "end", "x"),
                edge("y", "output", "r2", "input"),
                edge("r2", "again", "r2", "input"),
            ],
        }
    )
    assert g.cyclic_blocks == {"r", "x", "y", "r2"}
    assert parse_graph(linear()).cyclic_blocks == frozenset()


def test_ancestors_plain_and_with_for_each_bodies() -> None:
    g = parse_graph(chain())
    assert g.ancestors("c") == {"start", "a", "b"}
    assert g.ancestors("end") == {"start", "a", "b", "c", "side"}
    assert g.ancestors("start") == set()
    fe = parse_graph(for_each_graph())
    # A body block depends on its for_each (and so on what feeds it) and on earlier body blocks.
    assert fe.ancestors("double") == {"pages", "start"}
    assert fe.ancestors("label") == {"double", "pages", "start"}
    # What follows a for_each depends on its body, whose results it receives.
    assert fe.ancestors("end") == {"pages", "start", "double", "label"}


def test_ancestors_of_nested_for_each() -> None:
    g: Graph = parse_graph(
        {
            "blocks": [
                start("start", "items"),
                block("outer", "for_each", body=["inner"]),
                block("inner", "for_each", body=["leaf"]),
                fn("leaf"),
                block("end", "end"),
            ],
            "edges": [
                edge("start", "items", "outer", "items"),
                edge("outer", "item", "inner", "items"),
                edge("inner", "item", "leaf", "value"),
                edge("outer", "results", "end", "x"),
            ],
        }
    )
    assert g.body_owner == {"inner": "outer", "leaf": "inner"}
    assert g.ancestors("leaf") == {"inner", "outer", "start"}
    assert g.ancestors("end") == {"outer", "inner", "leaf", "start"}
