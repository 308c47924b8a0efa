"""api.engine_metrics: the database-read families on the API's /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.engine_metrics import ENGINE_FAMILIES, EngineCollector, families
from engine.counters import CounterValue
from engine.db.models import Base
from engine.db.session import Database
from engine.engine_stats import EngineStats, QueueStats
from engine.settings import Settings
from engine.testing import QueueDispatcher

STATS = EngineStats(
    runs_by_status={"completed": 3, "failed": 1},
    queues={
        "step": QueueStats(queued=2, oldest_age_s=4.5, backlog=1),
        "sample": QueueStats(queued=0, oldest_age_s=0.0, backlog=0),
    },
    counters=[
        CounterValue(name="outbox_republished", labels={}, value=7),
        CounterValue(name="run_terminations", labels={"reason": "stale_run_reaper"}, value=2),
        CounterValue(name="run_terminations", labels={"reason": "finally_safety_net"}, value=1),
    ],
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


class Fixed(EngineCollector):
    def __init__(self, stats: EngineStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        yield from families(self.stats)


def test_every_family_renders_with_its_labels() -> None:
    registry = CollectorRegistry()
    registry.register(Fixed(STATS))
    got = samples(generate_latest(registry).decode())
    assert got == {
        ("quorum_runs", (("status", "completed"),)): 3,
        ("quorum_runs", (("status", "failed"),)): 1,
        ("quorum_queued_rows", (("kind", "sample"),)): 0,
        ("quorum_queued_rows", (("kind", "step"),)): 2,
        ("quorum_queued_oldest_age_seconds", (("kind", "sample"),)): 0,
        ("quorum_queued_oldest_age_seconds", (("kind", "step"),)): 4.5,
        ("quorum_outbox_backlog_rows", (("kind", "sample"),)): 0,
        ("quorum_outbox_backlog_rows", (("kind", "step"),)): 1,
        ("quorum_outbox_republished_total", ()): 7,
        ("quorum_run_terminations_total", (("reason", "finally_safety_net"),)): 1,
        ("quorum_run_terminations_total", (("reason", "stale_run_reaper"),)): 2,
    }
    assert {name for name, _ in got} == set(ENGINE_FAMILIES)


class Away:
    def transaction(self) -> Any:
        raise ConnectionError("database away")


def test_a_database_away_leaves_the_other_metrics_answering() -> None:
    registry = CollectorRegistry()
    registry.register(EngineCollector(Away(), outbox_after_s=60))  # type: ignore[arg-type]
    assert generate_latest(registry) == b""


class Counting:
    """A database whose every transaction is counted."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.reads = 0

    def transaction(self) -> Any:
        self.reads += 1
        return self.inner.transaction()


def test_scrapes_in_a_burst_read_the_database_once(settings: Settings) -> None:
    db = Database(settings)
    counting = Counting(db)
    try:
        registry = CollectorRegistry()
        collector = EngineCollector(counting, outbox_after_s=60)  # type: ignore[arg-type]
        registry.register(collector)
        first = generate_latest(registry)
        for _ in range(5):
            assert generate_latest(registry) == first
        assert counting.reads == 1
        collector.read_every_s = 0
        generate_latest(registry)
        assert counting.reads == 2
    finally:
        db.close()


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(data_dir=str(tmp_path))
    db = Database(settings)
    Base.metadata.create_all(db.engine)
    db.close()
    yield settings


def test_the_api_metrics_endpoint_serves_them_next_to_the_request_metrics(
    settings: Settings,
) -> None:
    app = create_app(settings, dispatcher=QueueDispatcher())
    try:
        client = app.test_client()
        client.get("/healthz")
        body = client.get("/metrics").get_data(as_text=True)
    finally:
        app.extensions["quorum"].close()
    names = {name for name, _ in samples(body)}
    assert set(ENGINE_FAMILIES) - {"quorum_run_terminations_total"} <= names
    assert "quorum_http_requests_total" in names
    assert samples(body)[("quorum_runs", (("status", "running"),))] == 0
