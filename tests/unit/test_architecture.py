"""The shape of the code, checked: no import cycle, no module over 400 lines, no function
over 60 lines, in engine/, api/, workers/ and quorum/ (migrations aside), with no exception."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "api", "workers", "quorum")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (itself or its nearest package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str, tree: ast.AST, is_package: bool) -> set[str]:
    """Every project module ``module`` imports, at the top or inside functions.

    ``from pkg import x`` runs ``pkg/__init__`` first: it is an edge to ``pkg`` and, when
    ``x`` is a module, to ``pkg.x`` as well.
    """
    edges: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            edges.update(t for a in node.names if (t := _resolve(a.name)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            if target := _resolve(name):
                edges.add(target)
            for alias in node.names:
                full = f"{name}.{alias.name}"
                if full in MODULES:
                    edges.add(full)
    edges.discard(module)
    return edges


def import_graph() -> dict[str, set[str]]:
    return {
        name: _imported(name, ast.parse(path.read_text()), path.name == "__init__.py")
        for name, path in MODULES.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_package_init() -> None:
    graph = {"p": {"p.a"}, "p.a": {"p.b"}, "p.b": {"p"}, "q": {"p"}}
    assert cycles(graph) == [["p", "p.a", "p.b"]]


def test_the_import_graph_sees_package_inits() -> None:
    tree = ast.parse("from api import views\nfrom engine.graph import model\n")
    edges = _imported("api.routes.runs", tree, is_package=False)
    assert {"api", "api.views", "engine.graph", "engine.graph.model"} <= edges


def test_the_import_graph_sees_imports_inside_functions_and_relative_ones() -> None:
    tree = ast.parse("def f():\n    import engine.runs\nfrom .model import Graph\n")
    assert _imported("engine.graph.parse", tree, is_package=False) == {
        "engine.runs",
        "engine.graph.model",
    }


def test_no_import_cycle() -> None:
    assert [" ".join(component) for component in cycles(import_graph())] == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small(name: str) -> None:
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines"


def _long_functions(tree: ast.AST, prefix: str = "") -> Iterator[str]:
    """``qualified.name (n lines)`` of every function over the limit, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = prefix + node.name
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if size > MAX_FUNCTION_LINES:
                yield name
            yield from _long_functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _long_functions(node, prefix + node.name + ".")
        else:
            yield from _long_functions(node, prefix)


def test_long_functions_are_found_by_qualified_name() -> None:
    body = "\n".join(["    x = 1"] * MAX_FUNCTION_LINES)
    tree = ast.parse(f"class C:\n  def m(self):\n{body}\ndef short():\n    pass\n")
    assert list(_long_functions(tree)) == ["C.m"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_functions_are_short(name: str) -> None:
    found = list(_long_functions(ast.parse(MODULES[name].read_text())))
    assert found == [], f"over {MAX_FUNCTION_LINES} lines"
