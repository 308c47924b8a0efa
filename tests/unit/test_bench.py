"""The bench's bookkeeping: rows of results.json, the printed table, the round order, the
scenario names it accepts, and where it imports the engine from. No timing, no services."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench.__main__ import parse
from bench.context import rounds
from bench.report import Row, table

BENCH = Path(__file__).resolve().parents[2] / "bench"
PROJECT = frozenset({"engine", "api", "workers", "quorum"})


def baseline_row() -> Row:
    return Row(
        scenario="S2",
        what="50-block chain (wall time)",
        unit="ms",
        engine=[300.0, 320.0, 310.0],
        baseline=[290.0, 300.0, 295.0],
        ratio=1.05,
        ratio_label="x",
        target="≤ 0.50x",
        met=False,
    )


def peer_row() -> Row:
    return Row(
        scenario="S2",
        what="50-block chain (wall time)",
        unit="ms",
        engine=[300.0, 320.0, 310.0],
        peer="dbos",
        peer_samples=[250.0, 260.0, 240.0],
        ratio=1.24,
        ratio_label="x",
        target="≤ 0.60x",
        met=False,
    )


def test_a_baseline_row_keeps_the_fields_results_json_always_had() -> None:
    out = baseline_row().as_json()
    assert out["scenario"] == "S2"
    assert out["engine_median"] == 310.0
    assert out["baseline_median"] == 295.0
    assert out["ratio"] == 1.05
    assert "peer" not in out
    assert "peer_median" not in out


def test_a_peer_row_names_its_peer_and_its_median() -> None:
    out = peer_row().as_json()
    assert out["scenario"] == "S2"
    assert out["peer"] == "dbos"
    assert out["engine_median"] == 310.0
    assert out["peer_median"] == 250.0
    assert out["ratio"] == 1.24
    assert out["peer_samples"] == [250.0, 260.0, 240.0]
    assert "baseline_median" not in out


def test_the_table_shows_the_peer_beside_the_baseline() -> None:
    lines = table([baseline_row(), peer_row()], peer_label="DBOS 3.4.0").splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "scenario",
        "engine (median)",
        "baseline (median)",
        "DBOS 3.4.0 (median)",
        "ratio",
        "target",
        "met",
    ]
    base = [c.strip() for c in lines[2].strip("|").split("|")]
    peer = [c.strip() for c in lines[3].strip("|").split("|")]
    assert base[2:5] == ["295.0 ms", "—", "1.05x"]
    assert peer[2:5] == ["—", "250.0 ms", "1.24x"]
    assert peer[5:] == ["≤ 0.60x", "NO"]


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def test_rounds_take_one_sample_of_every_side_in_turn() -> None:
    calls: list[str] = []

    def side(label: str) -> float:
        calls.append(label)
        return float(len(calls))

    got = rounds(
        Log(),  # type: ignore[arg-type]
        "S1",
        2,
        {
            "engine": lambda: side("engine"),
            "baseline": lambda: side("baseline"),
            "dbos": lambda: side("dbos"),
        },
    )
    assert calls == ["engine", "baseline", "dbos", "engine", "baseline", "dbos"]
    assert got == {"engine": [1.0, 4.0], "baseline": [2.0, 5.0], "dbos": [3.0, 6.0]}


def test_s1_api_is_a_scenario_of_its_own() -> None:
    assert parse(["--scenarios", "s1-api,S2"]).chosen == {"S1-API", "S2"}
    with pytest.raises(SystemExit):
        parse(["--scenarios", "S1-HTTP"])


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(
    "path", [p for p in sorted(BENCH.glob("*.py")) if p.name != "seam.py"], ids=lambda p: p.name
)
def test_the_bench_reaches_the_engine_only_through_its_seam(path: Path) -> None:
    assert not imported_roots(path) & PROJECT, f"{path.name}: import it from bench.seam"
