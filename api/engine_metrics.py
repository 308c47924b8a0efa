"""The fleet's engine metrics on the API's ``/metrics``, read from the database per scrape.

Any API process can answer for the whole fleet: runs, queues and the counters of every
worker live in the database (``engine.engine_stats``), not in a process.
"""

from __future__ import annotations

import logging
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


class EngineCollector(Collector):
    def __init__(self, db: Database, *, outbox_after_s: float) -> None:
        self.db = db
        self.outbox_after_s = outbox_after_s

    def collect(self) -> Iterator[Metric]:
        try:
            stats = read_stats(self.db, outbox_after_s=self.outbox_after_s)
        except Exception:
            # The request metrics still answer; the gap in these shows the database is away.
            log.warning("engine metrics not read", exc_info=True)
            return
        yield from families(stats)


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
) -> None:
    registry.register(EngineCollector(db, outbox_after_s=outbox_after_s))
