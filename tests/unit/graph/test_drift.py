"""Drift: what changed upstream of one block between two graphs."""

from __future__ import annotations

from engine.graph.drift import upstream_drift
from engine.graph.parse import parse_graph
from tests.support.graphs import chain, edge, fn, for_each_graph


def test_no_drift_between_equal_graphs() -> None:
    g = parse_graph(chain())
    assert upstream_drift(g, parse_graph(chain()), "c") == {"blocks": [], "edges": []}


def test_ancestor_config_change_is_drift() -> None:
    old = parse_graph(chain())
    data = chain()
    data["blocks"][1]["config"]["params"] = {"x": 1}  # a
    new = parse_graph(data)
    assert upstream_drift(old, new, "c") == {"blocks": ["a"], "edges": []}
    assert upstream_drift(old, new, "end") == {"blocks": ["a"], "edges": []}
    # side does not depend on a.
    assert upstream_drift(old, new, "side") == {"blocks": [], "edges": []}


def test_own_config_change_is_not_drift() -> None:
    old = parse_graph(chain())
    data = chain()
    data["blocks"][3]["config"]["params"] = {"x": 1}  # c
    assert upstream_drift(old, parse_graph(data), "c") == {"blocks": [], "edges": []}


def test_downstream_change_is_not_drift() -> None:
    old = parse_graph(chain())
    data = chain()
    data["blocks"][3]["config"]["function"] = "other"  # c, downstream of b
    assert upstream_drift(old, parse_graph(data), "b") == {"blocks": [], "edges": []}


def test_edge_change_is_drift() -> None:
    old = parse_graph(chain())
    data = chain()
    data["edges"][1] = edge("a", "output", "b", "other")
    drift = upstream_drift(old, parse_graph(data), "c")
    assert drift == {"blocks": [], "edges": ["a.output->b.other", "a.output->b.value"]}
    # The edge into the block itself counts too.
    data = chain()
    data["edges"][2] = edge("b", "output", "c", "renamed")
    drift = upstream_drift(old, parse_graph(data), "c")
    assert drift == {"blocks": [], "edges": ["b.output->c.renamed", "b.output->c.value"]}


def test_new_upstream_block_is_drift() -> None:
    old = parse_graph(chain())
    data = chain()
    data["blocks"].append(fn("extra"))
    data["edges"].append(edge("start", "doc", "extra", "value"))
    data["edges"].append(edge("extra", "output", "c", "more"))
    drift = upstream_drift(old, parse_graph(data), "c")
    assert drift["blocks"] == ["extra"]
    assert drift["edges"] == ["extra.output->c.more", "start.doc->extra.value"]


def test_drift_through_a_for_each_body() -> None:
    old = parse_graph(for_each_graph())
    data = for_each_graph()
    data["blocks"][2]["config"]["params"] = {"factor": 3}  # double, in the body
    new = parse_graph(data)
    # label (in the body) depends on double; end depends on the body through the results.
    assert upstream_drift(old, new, "label")["blocks"] == ["double"]
    assert upstream_drift(old, new, "end")["blocks"] == ["double"]
    assert upstream_drift(old, new, "double")["blocks"] == []
