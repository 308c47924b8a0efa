"""Every state move goes through engine.lifecycle.transition (a compare-and-set).

An UPDATE that writes ``state`` or ``status`` by hand would skip the lifecycle's table of
allowed moves and its fencing: none may be written outside engine/lifecycle.py and the
store (engine/store/). Inserts of new rows in their first state are not moves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = ("engine/lifecycle.py", "engine/store/")
STATE_COLUMNS = frozenset({"state", "status"})
SOURCES = sorted(
    p
    for package in ("engine", "api", "workers")
    for p in (ROOT / package).rglob("*.py")
    if "migrations" not in p.parts and not p.relative_to(ROOT).as_posix().startswith(ALLOWED)
)


def hand_built_moves(tree: ast.AST) -> list[int]:
    """Lines of ``.values(...)`` calls (UPDATE ... SET) that write a state column."""
    found: list[int] = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "values"
        ):
            continue
        keys = {k.arg for k in node.keywords}
        for arg in node.args:
            if isinstance(arg, ast.Dict):
                keys |= {k.value for k in arg.keys if isinstance(k, ast.Constant)}
        if keys & STATE_COLUMNS:
            found.append(node.lineno)
    return found


def test_the_check_finds_a_hand_built_move() -> None:
    src = (
        "update(Step).values(state='queued')\n"
        "update(Run).where(x).values({'status': 'failed'})\n"
        "update(Step).values(open_children=2)\n"
        "insert(Step).from_select(['state'], q)\n"
    )
    assert hand_built_moves(ast.parse(src)) == [1, 2]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_hand_built_state_move(path: Path) -> None:
    lines = hand_built_moves(ast.parse(path.read_text(encoding="utf-8")))
    assert lines == [], f"use engine.lifecycle.transition (lines {lines})"
