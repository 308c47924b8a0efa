"""A graph's structure: loops through a router, for_each bodies, reachable blocks."""

from __future__ import annotations

import pytest

from engine.graph.parse import parse_graph
from tests.support.graphs import block, edge, errors_of, fn, for_each_graph, linear, start


def test_a_cycle_through_a_router_is_accepted() -> None:
    data = {
        "blocks": [
            start(),
            block("r", "router", routes=[{"handle": "again", "when": "input < 3"}], default="done"),
            fn("inc", "inc"),
            block("end", "end"),
        ],
        "edges": [
            edge("start", "doc", "r", "input"),
            edge("r", "again", "inc", "value"),
            edge("inc", "output", "r", "input"),
            edge("r", "done", "end", "result"),
        ],
    }
    g = parse_graph(data)
    assert g.cyclic_blocks == {"r", "inc"}


def test_cycle_without_a_router() -> None:
    data = {
        "blocks": [start(), fn("a"), fn("b"), block("end", "end")],
        "edges": [
            edge("start", "doc", "a", "value"),
            edge("a", "output", "b", "value"),
            edge("b", "output", "a", "back"),
            edge("b", "output", "end", "x"),
        ],
    }
    errs = errors_of(data)
    assert len(errs) == 1
    loc, msg = errs[0]
    assert loc in {("edges", 1), ("edges", 2)}  # an edge of the cycle is named
    assert "cycle without a router" in msg
    assert "['a', 'b']" in msg


def test_self_loop_without_a_router() -> None:
    data = {
        "blocks": [start(), fn("a")],
        "edges": [edge("start", "doc", "a", "value"), edge("a", "output", "a", "again")],
    }
    errs = errors_of(data)
    assert errs == [(("edges", 1), "cycle without a router through blocks ['a']")]


def test_unreachable_block() -> None:
    data = linear()
    data["blocks"].append(fn("island"))
    data["blocks"].append(block("end2", "end"))
    data["edges"].append(edge("island", "output", "end2", "x"))
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("blocks", 3), ("blocks", 4)]
    assert "'island' is not reachable" in errs[0][1]


def test_for_each_graph_is_valid() -> None:
    g = parse_graph(for_each_graph())
    assert g.body_owner == {"double": "pages", "label": "pages"}
    assert g.collect_block("pages") == "label"


def test_edge_out_of_a_for_each_body_is_refused() -> None:
    data = for_each_graph()
    data["edges"].append(edge("label", "output", "end", "leak"))
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("edges", 4)]
    assert "body boundary" in errs[0][1]


def test_edge_into_a_for_each_body_is_refused() -> None:
    data = for_each_graph()
    data["edges"].append(edge("start", "items", "label", "extra"))
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("edges", 4)]
    assert "body boundary" in errs[0][1]


def test_item_handle_feeds_only_the_body() -> None:
    data = for_each_graph()
    data["edges"].append(edge("pages", "item", "end", "item"))
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("edges", 4)]


@pytest.mark.parametrize("member", ["start", "end", "ghost", "pages"])
def test_bad_body_members(member: str) -> None:
    data = for_each_graph()
    data["blocks"][1]["config"]["body"] = ["double", "label", member]
    errs = errors_of(data)
    assert (("blocks", 1, "config", "body"), f"{member!r} cannot be a body block") in errs
