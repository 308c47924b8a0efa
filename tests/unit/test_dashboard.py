"""deploy/grafana/quorum.json: a Grafana dashboard of exactly the families Quorum exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from api.engine_metrics import ENGINE_FAMILIES
from workers.metrics import WORKER_FAMILIES

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "quorum.json"
# What a histogram family exposes besides its name; PromQL names those series.
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")
HISTOGRAMS = {"quorum_step_queue_wait_seconds", "quorum_block_run_seconds"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def family_of(series: str) -> str:
    for suffix in HISTOGRAM_SERIES:
        base = series.removesuffix(suffix)
        if base != series and base in HISTOGRAMS:
            return base
    return series


def test_it_is_a_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] == "timeseries" and panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["refId"] and target["expr"]
            assert target["datasource"] == panel["datasource"]


def test_it_names_exactly_the_exported_families(dashboard: dict[str, Any]) -> None:
    named = {
        family_of(name)
        for expr in exprs(dashboard)
        for name in re.findall(r"\bquorum_[a-z_]+\b", expr)
    }
    exported = set(ENGINE_FAMILIES) | set(WORKER_FAMILIES)
    assert named == exported


def test_histograms_are_read_through_their_buckets_or_counts(dashboard: dict[str, Any]) -> None:
    for expr in exprs(dashboard):
        for family in HISTOGRAMS:
            for match in re.findall(rf"\b{family}\w*", expr):
                assert match in {family + s for s in HISTOGRAM_SERIES}, expr
