"""The worker's metrics (``engine.ports.Metrics``) on prometheus_client.

Every family a worker exports is declared here (``WORKER_FAMILIES``); the dashboard and
its test hold to this list. The values live in prometheus_client's multiprocess files
when the worker serves metrics (``workers.metrics_server``), so each prefork pool
process adds to what the worker's one port shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from engine.ports import Metrics, NoMetrics
from engine.settings import Settings

QUEUE_WAIT = "quorum_step_queue_wait_seconds"
BLOCK_RUN = "quorum_block_run_seconds"
SAMPLES = "quorum_consensus_samples_total"
SAMPLE_FAILURES = "quorum_consensus_sample_failures_total"
WORKER_FAMILIES = (QUEUE_WAIT, BLOCK_RUN, SAMPLES, SAMPLE_FAILURES)

# From a hot in-process successor (milliseconds) to a backlog or a retry's backoff.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
# From a function block (milliseconds) to a slow model call or a long consensus.
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True, kw_only=True)
class PrometheusMetrics:
    queue_wait: Histogram
    block_run: Histogram
    samples: Counter
    sample_failures: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> PrometheusMetrics:
        # prometheus_client names a counter without "_total"; it adds the suffix itself.
        return cls(
            queue_wait=Histogram(
                QUEUE_WAIT,
                "Time a row waited in queued before a worker claimed it",
                ["kind", "block_type"],
                buckets=WAIT_BUCKETS,
                registry=registry,
            ),
            block_run=Histogram(
                BLOCK_RUN,
                "Time from claiming a block to its result, by block type and outcome",
                ["block_type", "outcome"],
                buckets=RUN_BUCKETS,
                registry=registry,
            ),
            samples=Counter(
                SAMPLES.removesuffix("_total"),
                "Consensus samples (model calls of a consensus block) that ended",
                ["block_type"],
                registry=registry,
            ),
            sample_failures=Counter(
                SAMPLE_FAILURES.removesuffix("_total"),
                "Consensus samples that failed, by error type",
                ["block_type", "reason"],
                registry=registry,
            ),
        )

    def observe_queue_wait(self, *, kind: str, block_type: str, seconds: float) -> None:
        self.queue_wait.labels(kind, block_type).observe(seconds)

    def observe_block_run(self, *, block_type: str, outcome: str, seconds: float) -> None:
        self.block_run.labels(block_type, outcome).observe(seconds)

    def count_sample(self, *, block_type: str, failure: str | None) -> None:
        self.samples.labels(block_type).inc()
        if failure is not None:
            self.sample_failures.labels(block_type, failure).inc()


def worker_metrics(settings: Settings) -> Metrics:
    """The metrics of a pool process: exported only when the worker serves them."""
    if settings.worker_metrics_port <= 0:
        return NoMetrics()
    # A registry of its own: the worker's server reads the multiprocess files instead.
    return PrometheusMetrics.create(CollectorRegistry())
