"""The engine core stays free of the web framework and the broker stack."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "engine"
FORBIDDEN = frozenset({"flask", "werkzeug", "celery", "kombu", "redis", "billiard"})
SOURCES = sorted(ENGINE.rglob("*.py"))


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_engine_sources_are_found() -> None:
    names = {p.relative_to(ENGINE).as_posix() for p in SOURCES}
    assert {"run/scheduler.py", "lifecycle.py", "db/models.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ENGINE).as_posix())
def test_no_framework_or_broker_import(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert not imported_roots(tree) & FORBIDDEN


def test_the_checker_catches_every_import_form() -> None:
    src = (
        "import celery\n"
        "import redis.client as rc\n"
        "from flask import Flask\n"
        "from kombu.utils import x\n"
        "def f():\n    import werkzeug\n"
        "importlib.import_module('billiard.pool')\n"
        "from . import local\n"
    )
    assert imported_roots(ast.parse(src)) == FORBIDDEN
