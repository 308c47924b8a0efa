"""The whole-graph diff: added, removed and changed blocks and edges, as drift sees them."""

from __future__ import annotations

import copy
from typing import Any

from engine.graph.diff import graph_diff
from engine.graph.drift import upstream_drift
from engine.graph.parse import parse_graph
from tests.support.graphs import block, edge, fn, start


def _graph() -> dict[str, Any]:
    return {
        "blocks": [start(), fn("a"), fn("b"), fn("c", "noop"), block("end", "end")],
        "edges": [
            edge("start", "doc", "a", "value"),
            edge("a", "output", "b", "value"),
            edge("b", "output", "end", "b"),
            edge("start", "doc", "c", "value"),
            edge("c", "output", "end", "c"),
        ],
    }


def test_identical_graphs_have_no_difference() -> None:
    g = parse_graph(_graph())
    diff = graph_diff(g, parse_graph(copy.deepcopy(_graph())))
    assert diff.is_empty
    assert diff.as_dict() == {
        "blocks": {"added": [], "removed": [], "changed": []},
        "edges": {"added": [], "removed": []},
    }


def test_blocks_and_edges_added_removed_and_changed() -> None:
    old = _graph()
    new = copy.deepcopy(old)
    new["blocks"][1]["config"]["params"] = {"x": 1}  # a: config changed
    new["blocks"][2]["name"] = "Bee"  # b: renamed only, not a difference
    new["blocks"] = [b for b in new["blocks"] if b["id"] != "c"]  # c removed
    new["blocks"].append(fn("d", "words"))  # d added
    new["edges"] = [e for e in new["edges"] if "c" not in (e["source"], e["target"])]
    new["edges"] += [edge("b", "output", "d", "value"), edge("d", "output", "end", "d")]
    diff = graph_diff(parse_graph(old), parse_graph(new))
    assert not diff.is_empty
    assert diff.as_dict() == {
        "blocks": {"added": ["d"], "removed": ["c"], "changed": ["a"]},
        "edges": {
            "added": ["b.output->d.value", "d.output->end.d"],
            "removed": ["c.output->end.c", "start.doc->c.value"],
        },
    }
    # Read the other way round, additions and removals swap; changes stay.
    back = graph_diff(parse_graph(new), parse_graph(old))
    assert back.blocks_added == diff.blocks_removed
    assert back.blocks_removed == diff.blocks_added
    assert back.blocks_changed == diff.blocks_changed
    assert (back.edges_added, back.edges_removed) == (diff.edges_removed, diff.edges_added)


def test_a_type_change_is_a_change_and_a_moved_edge_is_removed_and_added() -> None:
    old = _graph()
    new = copy.deepcopy(old)
    new["blocks"][3] = block("c", "function", function="noop", retries=2)
    new["edges"][3] = edge("a", "output", "c", "value")  # c now reads a, not start
    diff = graph_diff(parse_graph(old), parse_graph(new))
    assert diff.blocks_changed == ("c",)
    assert diff.edges_added == ("a.output->c.value",)
    assert diff.edges_removed == ("start.doc->c.value",)


def test_the_drift_of_any_block_is_part_of_the_whole_diff() -> None:
    # The 409 drift answer is this diff seen from one block: restricted to its upstream.
    old = _graph()
    new = copy.deepcopy(old)
    new["blocks"][1]["config"]["params"] = {"x": 2}
    new["edges"][4] = edge("c", "output", "end", "other")
    g_old, g_new = parse_graph(old), parse_graph(new)
    diff = graph_diff(g_old, g_new)
    blocks = set(diff.blocks_added + diff.blocks_removed + diff.blocks_changed)
    edges = set(diff.edges_added + diff.edges_removed)
    for b in ("a", "b", "c", "end"):
        drift = upstream_drift(g_old, g_new, b)
        assert set(drift["blocks"]) <= blocks, b
        assert set(drift["edges"]) <= edges, b
    assert upstream_drift(g_old, g_new, "end") == {
        "blocks": ["a"],
        "edges": ["c.output->end.c", "c.output->end.other"],
    }
