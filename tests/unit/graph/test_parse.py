"""Reading a graph from JSON: what is accepted, and every bad block and edge named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.errors import Invalid
from engine.graph.parse import parse_graph
from tests.support.graphs import block, edge, errors_of, fn, for_each_graph, linear, start


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


def test_collect_must_name_a_body_block() -> None:
    data = for_each_graph()
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


def test_parse_does_not_alias_the_input() -> None:
    data = linear()
    before = copy.deepcopy(data)
    g = parse_graph(data)
    data["blocks"][1]["config"]["function"] = "mutated"
    assert g.by_id["f"].config["function"] == "identity"
    assert before["blocks"][1]["config"]["function"] == "identity"
