"""The fleet's engine metrics on the API's ``/metrics``, read from the database per scrape.

Any API process can answer for the whole fleet: runs, queues and the counters of every
worker live in the database (``engine.engine_stats``), not in a process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.counters import OUTBOX_REPUBLISHED, RUN_TERMINATIONS
from engine.db.session import Database
from engine.engine_stats import EngineStats, read_stats

log = logging.getLogger("quorum.api.metrics")

RUNS = "quorum_runs"
QUEUED = "quorum_queued_rows"
QUEUED_AGE = "quorum_queued_oldest_age_seconds"
BACKLOG = "quorum_outbox_backlog_rows"
REPUBLISHED = "quorum_outbox_republished_total"
TERMINATIONS = "quorum_run_terminations_total"
ENGINE_FAMILIES = (RUNS, QUEUED, QUEUED_AGE, BACKLOG, REPUBLISHED, TERMINATIONS)

# /metrics answers without a key: however often it is asked, one API process reads the
# database for it at most once per this many seconds.
READ_EVERY_S = 5.0


class EngineCollector(Collector):
    def __init__(
        self, db: Database, *, outbox_after_s: float, read_every_s: float = READ_EVERY_S
    ) -> None:
        self.db = db
        self.outbox_after_s = outbox_after_s
        self.read_every_s = read_every_s
        self._lock = threading.Lock()
        self._read_at = 0.0
        self._stats: EngineStats | None = None

    def collect(self) -> Iterator[Metric]:
        stats = self._read()
        if stats is not None:
            yield from families(stats)

    def _read(self) -> EngineStats | None:
        with self._lock:
            now = time.monotonic()
            if self._stats is not None and now - self._read_at < self.read_every_s:
                return self._stats
            try:
                self._stats = read_stats(self.db, outbox_after_s=self.outbox_after_s)
            except Exception:
                # The request metrics still answer; the gap in these shows the database away.
                log.warning("engine metrics not read", exc_info=True)
                self._stats = None
                return None
            self._read_at = now
            return self._stats


def families(stats: EngineStats) -> Iterator[Metric]:
    runs = GaugeMetricFamily(RUNS, "Runs by status", labels=["status"])
    for status, count in sorted(stats.runs_by_status.items()):
        runs.add_metric([status], count)
    yield runs
    queued = GaugeMetricFamily(QUEUED, "Rows waiting in queued for a worker", labels=["kind"])
    age = GaugeMetricFamily(
        QUEUED_AGE, "How long the oldest queued row has waited", labels=["kind"]
    )
    backlog = GaugeMetricFamily(
        BACKLOG, "Pending or queued rows past the outbox threshold", labels=["kind"]
    )
    for kind, queue in sorted(stats.queues.items()):
        queued.add_metric([kind], queue.queued)
        age.add_metric([kind], queue.oldest_age_s)
        backlog.add_metric([kind], queue.backlog)
    yield from (queued, age, backlog)
    # Families without the "_total" suffix: prometheus_client appends it to counters.
    republished = CounterMetricFamily(
        REPUBLISHED.removesuffix("_total"), "Rows the outbox sweeper published again"
    )
    republished.add_metric([], _sum(stats, OUTBOX_REPUBLISHED))
    yield republished
    ended = CounterMetricFamily(
        TERMINATIONS.removesuffix("_total"),
        "Runs ended by a termination, by reason (stale_run_reaper, finally_safety_net, ...)",
        labels=["reason"],
    )
    for counter in stats.counters:
        if counter.name == RUN_TERMINATIONS:
            ended.add_metric([counter.labels.get("reason", "none")], counter.value)
    yield ended


def _sum(stats: EngineStats, name: str) -> int:
    return sum(c.value for c in stats.counters if c.name == name)


def register_engine_metrics(
    registry: CollectorRegistry, db: Database, *, outbox_after_s: float
) -> EngineCollector:
    collector = EngineCollector(db, outbox_after_s=outbox_after_s)
    registry.register(collector)
    return collector
