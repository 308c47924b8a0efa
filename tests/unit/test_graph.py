"""Graph parsing and validation, drift and topology."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.errors import Invalid
from engine.graph.drift import upstream_drift
from engine.graph.model import Graph
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


# -- accepted graphs ---------------------------------------------------------------------


def test_a_valid_graph_parses_with_every_part() -> None:
    g = parse_graph(linear())
    assert [b.id for b in g.blocks] == ["start", "f", "end"]
    assert [e.label() for e in g.edges] == ["start.doc->f.value", "f.output->end.result"]
    assert g.by_id["f"].config == {"function": "identity"}
    assert [b.id for b in g.start_blocks] == ["start"]
    assert [e.target for e in g.outgoing("start")] == ["f"]
    assert [e.source for e in g.incoming("end")] == ["f"]
    assert g.cyclic_blocks == frozenset()
    # The stored form round-trips.
    assert parse_graph(g.as_dict()).as_dict() == g.as_dict()


def test_every_block_type_is_accepted() -> None:
    data = {
        "blocks": [
            start("start", "doc", "items"),
            block("ex", "extract", schema={"type": "object"}, n_consensus=3),
            block("cls", "classifier", categories=["invoice", "letter"]),
            block("sp", "split", parts=[{"name": "head"}, "body"]),
            block(
                "r",
                "router",
                routes=[{"handle": "big", "when": "input.total > 10"}],
                default="small",
            ),
            block("loop", "for_each", body=["double"]),
            fn("double", "double"),
            block("ask", "human_input"),
            block("end", "end"),
        ],
        "edges": [
            edge("start", "doc", "ex", "document"),
            edge("start", "doc", "cls", "document"),
            edge("cls", "invoice", "sp", "document"),
            edge("ex", "output", "r", "input"),
            edge("r", "big", "ask", "prompt"),
            edge("start", "items", "loop", "items"),
            edge("loop", "item", "double", "value"),
            edge("loop", "results", "end", "results"),
            edge("r", "small", "end", "small"),
            edge("ask", "response", "end", "answer"),
            edge("sp", "head", "end", "head"),
            edge("cls", "letter", "end", "letter"),
        ],
    }
    g = parse_graph(data)
    assert len(g.blocks) == 9
    assert g.body_owner == {"double": "loop"}
    assert g.collect_block("loop") == "double"


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


# -- refused graphs: the offending block or edge is named ---------------------------------


def test_unknown_block_type() -> None:
    data = linear()
    data["blocks"][1]["type"] = "teleport"
    errs = errors_of(data)
    assert (("blocks", 1, "type"), "unknown block type 'teleport'") in errs


def test_duplicate_block_id() -> None:
    data = linear()
    data["blocks"].append(fn("f"))
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("blocks", 3, "id")]
    assert "duplicate block id 'f'" in errs[0][1]


def test_bad_block_id() -> None:
    data = linear()
    data["blocks"][1]["id"] = "Bad Id"
    errs = errors_of(data)
    assert ("blocks", 1, "id") in [loc for loc, _ in errs]


@pytest.mark.parametrize("end", ["source", "target"])
def test_edge_to_unknown_block(end: str) -> None:
    data = linear()
    data["edges"][1][end] = "ghost"
    errs = errors_of(data)
    assert (("edges", 1, end), "unknown block 'ghost'") in errs


@pytest.mark.parametrize(
    ("index", "key", "value", "needle"),
    [
        (0, "source_handle", "nope", "block 'start' has no output handle 'nope'"),
        (1, "source_handle", "result", "block 'f' has no output handle 'result'"),
        (1, "target_handle", "bad handle!", "block 'end' has no input handle 'bad handle!'"),
    ],
)
def test_edge_with_unknown_handle(index: int, key: str, value: str, needle: str) -> None:
    data = linear()
    data["edges"][index][key] = value
    errs = errors_of(data)
    assert ((("edges", index, key)), needle) in errs


def test_edge_to_a_fixed_input_handle_that_does_not_exist() -> None:
    data = {
        "blocks": [start(), block("ex", "extract", schema={"type": "object"})],
        "edges": [edge("start", "doc", "ex", "text")],
    }
    errs = errors_of(data)
    assert (("edges", 0, "target_handle"), "block 'ex' has no input handle 'text'") in errs


def test_no_start_block() -> None:
    data = {"blocks": [fn("f"), block("end", "end")], "edges": [edge("f", "output", "end", "x")]}
    errs = errors_of(data)
    assert errs == [(("blocks",), "a start block is required")]


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


@pytest.mark.parametrize("n", [2, 4, 0, 9, True, "3"])
def test_bad_n_consensus(n: Any) -> None:
    data = {
        "blocks": [start(), block("ex", "extract", schema={"type": "object"}, n_consensus=n)],
        "edges": [edge("start", "doc", "ex", "document")],
    }
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("blocks", 1, "config", "n_consensus")]


@pytest.mark.parametrize("n", [1, 3, 5, 7])
def test_good_n_consensus(n: int) -> None:
    data = {
        "blocks": [start(), block("ex", "classifier", categories=["a", "b"], n_consensus=n)],
        "edges": [edge("start", "doc", "ex", "document")],
    }
    assert parse_graph(data).by_id["ex"].config["n_consensus"] == n


@pytest.mark.parametrize("when", ["input +", "__import__('os')", "open('x')", "input.__class__"])
def test_router_expression_error(when: str) -> None:
    data = {
        "blocks": [
            start(),
            block(
                "r",
                "router",
                routes=[{"handle": "ok", "when": "true"}, {"handle": "x", "when": when}],
            ),
            block("end", "end"),
        ],
        "edges": [edge("start", "doc", "r", "input"), edge("r", "ok", "end", "y")],
    }
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("blocks", 1, "config", "routes", 1, "when")]


def test_unreachable_block() -> None:
    data = linear()
    data["blocks"].append(fn("island"))
    data["blocks"].append(block("end2", "end"))
    data["edges"].append(edge("island", "output", "end2", "x"))
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("blocks", 3), ("blocks", 4)]
    assert "'island' is not reachable" in errs[0][1]


def _for_each_graph() -> dict[str, Any]:
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


def test_for_each_graph_is_valid() -> None:
    g = parse_graph(_for_each_graph())
    assert g.body_owner == {"double": "pages", "label": "pages"}
    assert g.collect_block("pages") == "label"


def test_edge_out_of_a_for_each_body_is_refused() -> None:
    data = _for_each_graph()
    data["edges"].append(edge("label", "output", "end", "leak"))
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("edges", 4)]
    assert "body boundary" in errs[0][1]


def test_edge_into_a_for_each_body_is_refused() -> None:
    data = _for_each_graph()
    data["edges"].append(edge("start", "items", "label", "extra"))
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("edges", 4)]
    assert "body boundary" in errs[0][1]


def test_item_handle_feeds_only_the_body() -> None:
    data = _for_each_graph()
    data["edges"].append(edge("pages", "item", "end", "item"))
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("edges", 4)]


@pytest.mark.parametrize("member", ["start", "end", "ghost", "pages"])
def test_bad_body_members(member: str) -> None:
    data = _for_each_graph()
    data["blocks"][1]["config"]["body"] = ["double", "label", member]
    errs = errors_of(data)
    assert (("blocks", 1, "config", "body"), f"{member!r} cannot be a body block") in errs


def test_collect_must_name_a_body_block() -> None:
    data = _for_each_graph()
    data["blocks"][1]["config"]["collect"] = "end"
    errs = errors_of(data)
    assert [loc for loc, _ in errs] == [("blocks", 1, "config", "collect")]


def test_several_errors_are_reported_together() -> None:
    data = linear()
    data["blocks"][1]["type"] = "teleport"
    data["edges"].append(edge("end", "x", "ghost", "y"))
    errs = errors_of(data)
    locs = [loc for loc, _ in errs]
    assert ("blocks", 1, "type") in locs
    assert ("edges", 2, "target") in locs


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"blocks": "x"}, ("blocks",)),
        ({"blocks": [], "edges": {}}, ("edges",)),
        ({"blocks": [42], "edges": []}, ("blocks", 0)),
        ({"blocks": [start()], "edges": [7]}, ("edges", 0)),
    ],
)
def test_malformed_shapes(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    assert loc in [lo for lo, _ in errors_of(data)]


def test_too_many_blocks() -> None:
    data = {"blocks": [fn(f"f{i}") for i in range(5)], "edges": []}
    with pytest.raises(Invalid) as info:
        parse_graph(data, max_blocks=4)
    assert [e.loc for e in info.value.errors] == [("blocks",)]


# -- drift --------------------------------------------------------------------------------


def _chain() -> dict[str, Any]:
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


def test_no_drift_between_equal_graphs() -> None:
    g = parse_graph(_chain())
    assert upstream_drift(g, parse_graph(_chain()), "c") == {"blocks": [], "edges": []}


def test_ancestor_config_change_is_drift() -> None:
    old = parse_graph(_chain())
    data = _chain()
    data["blocks"][1]["config"]["params"] = {"x": 1}  # a
    new = parse_graph(data)
    assert upstream_drift(old, new, "c") == {"blocks": ["a"], "edges": []}
    assert upstream_drift(old, new, "end") == {"blocks": ["a"], "edges": []}
    # side does not depend on a.
    assert upstream_drift(old, new, "side") == {"blocks": [], "edges": []}


def test_own_config_change_is_not_drift() -> None:
    old = parse_graph(_chain())
    data = _chain()
    data["blocks"][3]["config"]["params"] = {"x": 1}  # c
    assert upstream_drift(old, parse_graph(data), "c") == {"blocks": [], "edges": []}


def test_downstream_change_is_not_drift() -> None:
    old = parse_graph(_chain())
    data = _chain()
    data["blocks"][3]["config"]["function"] = "other"  # c, downstream of b
    assert upstream_drift(old, parse_graph(data), "b") == {"blocks": [], "edges": []}


def test_edge_change_is_drift() -> None:
    old = parse_graph(_chain())
    data = _chain()
    data["edges"][1] = edge("a", "output", "b", "other")
    drift = upstream_drift(old, parse_graph(data), "c")
    assert drift == {"blocks": [], "edges": ["a.output->b.other", "a.output->b.value"]}
    # The edge into the block itself counts too.
    data = _chain()
    data["edges"][2] = edge("b", "output", "c", "renamed")
    drift = upstream_drift(old, parse_graph(data), "c")
    assert drift == {"blocks": [], "edges": ["b.output->c.renamed", "b.output->c.value"]}


def test_new_upstream_block_is_drift() -> None:
    old = parse_graph(_chain())
    data = _chain()
    data["blocks"].append(fn("extra"))
    data["edges"].append(edge("start", "doc", "extra", "value"))
    data["edges"].append(edge("extra", "output", "c", "more"))
    drift = upstream_drift(old, parse_graph(data), "c")
    assert drift["blocks"] == ["extra"]
    assert drift["edges"] == ["extra.output->c.more", "start.doc->extra.value"]


def test_drift_through_a_for_each_body() -> None:
    old = parse_graph(_for_each_graph())
    data = _for_each_graph()
    data["blocks"][2]["config"]["params"] = {"factor": 3}  # double, in the body
    new = parse_graph(data)
    # label (in the body) depends on double; end depends on the body through the results.
    assert upstream_drift(old, new, "label")["blocks"] == ["double"]
    assert upstream_drift(old, new, "end")["blocks"] == ["double"]
    assert upstream_drift(old, new, "double")["blocks"] == []


# -- topology -----------------------------------------------------------------------------


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
    g = parse_graph(_chain())
    assert g.ancestors("c") == {"start", "a", "b"}
    assert g.ancestors("end") == {"start", "a", "b", "c", "side"}
    assert g.ancestors("start") == set()
    fe = parse_graph(_for_each_graph())
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


def test_parse_does_not_alias_the_input() -> None:
    data = linear()
    before = copy.deepcopy(data)
    g = parse_graph(data)
    data["blocks"][1]["config"]["function"] = "mutated"
    assert g.by_id["f"].config["function"] == "identity"
    assert before["blocks"][1]["config"]["function"] == "identity"
