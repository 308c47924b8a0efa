"""engine.blocks: one kind per block type; nothing outside engine/blocks compares types."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine.blocks.registry import BLOCK_TYPES, KINDS, check_config, handles_of, kind_of
from engine.execute import BlockFailed, Toolbox
from engine.functions import FunctionRegistry
from engine.graph.model import Block
from engine.providers.local import LocalProvider

ROOT = Path(__file__).resolve().parents[3]
# engine.graph.model defines Block itself, below the kinds (which import it): its Graph
# keeps its structural lookups of start blocks and for_each bodies.
EXEMPT = ("engine/blocks/", "engine/graph/model.py", "engine/db/migrations/")


def type_comparisons(tree: ast.AST) -> list[int]:
    """Lines comparing a block's type (``.type``, ``.block_type``) with a type string."""
    found: list[int] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        typed = any(
            isinstance(s, ast.Attribute) and s.attr in ("type", "block_type") for s in sides
        )
        strings = {
            s.value
            for side in sides
            for s in ast.walk(side)
            if isinstance(s, ast.Constant) and isinstance(s.value, str)
        }
        if typed and strings & BLOCK_TYPES:
            found.append(node.lineno)
    return found


def test_the_check_finds_a_type_comparison() -> None:
    src = (
        "if block.type == 'router': pass\n"
        "if s.block_type in ('end', 'x'): pass\n"
        "if a == 'end': pass\n"
    )
    assert type_comparisons(ast.parse(src)) == [1, 2]


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for package in ("engine", "api", "workers")
        for p in (ROOT / package).rglob("*.py")
        if not p.relative_to(ROOT).as_posix().startswith(EXEMPT)
    ),
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_no_block_type_string_compared_outside_the_kinds(path: Path) -> None:
    assert type_comparisons(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_every_type_has_its_kind() -> None:
    assert set(KINDS) == BLOCK_TYPES
    assert {t for t, k in KINDS.items() if k.calls_model} == {"extract", "classifier", "split"}
    assert kind_of("nonsense").handles({}).outputs == frozenset()


@pytest.mark.parametrize(
    ("block_type", "config", "loc"),
    [
        ("function", {"function": "f", "retries": 11}, ("config", "retries")),
        ("extract", {"schema": {"type": "object"}, "n_consensus": 2}, ("config", "n_consensus")),
        ("classifier", {"categories": ["a", "a"]}, ("config", "categories", 1)),
        (
            "router",
            {"routes": [{"handle": "x", "when": "input >"}]},
            ("config", "routes", 0, "when"),
        ),
        ("for_each", {"body": []}, ("config", "body")),
        ("start", {"inputs": {"x": {"type": "blob"}}}, ("config", "inputs", "x", "type")),
    ],
)
def test_each_kind_checks_its_config(
    block_type: str, config: dict[str, object], loc: tuple[object, ...]
) -> None:
    assert [e.loc for e in check_config(block_type, config)] == [loc]


def test_retries_are_no_concern_of_a_start_block() -> None:
    assert check_config("start", {"inputs": {}, "retries": 99}) == []


def test_a_router_activates_its_first_true_route() -> None:
    block = Block(
        id="r",
        type="router",
        config={"routes": [{"handle": "big", "when": "input > 10"}], "default": "small"},
    )
    tools = Toolbox(functions=FunctionRegistry(), provider=LocalProvider())
    assert kind_of("router").execute(block, {"input": 42}, tools).active == ("big",)
    assert kind_of("router").execute(block, {"input": 1}, tools).active == ("small",)
    assert handles_of("router", block.config).outputs == {"big", "small"}
    with pytest.raises(BlockFailed):
        kind_of("for_each").execute(block, {}, tools)
