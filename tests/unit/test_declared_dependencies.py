"""Every package the code imports is a declared, pinned runtime dependency.

A dependency that only arrives through another one (``referencing`` through ``jsonschema``)
is one upgrade away from missing; ``tests/integration/test_wheel.py`` catches what
transports import at run time, this catches the project's own imports without a build.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "api", "workers", "quorum")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_levels() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in (*PACKAGES, "__future__"):
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared_and_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared: dict[str, str] = {}
    for requirement in project["dependencies"]:
        name = re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0]
        declared[_normal(name)] = requirement
    assert all("==" in r for r in declared.values()), declared
    providers = packages_distributions()
    missing = {
        top: sorted(where)
        for top, where in imported_top_levels().items()
        if not {_normal(d) for d in providers.get(top, [top])} & set(declared)
    }
    assert missing == {}, f"imported but not declared in [project] dependencies: {missing}"
