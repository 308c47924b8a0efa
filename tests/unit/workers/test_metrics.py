"""workers.metrics: the worker's families on prometheus_client, off without a port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.ports import NoMetrics
from engine.settings import Settings
from workers.metrics import WORKER_FAMILIES, PrometheusMetrics, worker_metrics


def test_observations_land_in_their_families() -> None:
    registry = CollectorRegistry()
    m = PrometheusMetrics.create(registry)
    m.observe_queue_wait(kind="step", block_type="function", seconds=0.2)
    m.observe_block_run(block_type="extract", outcome="completed", seconds=1.5)
    m.count_sample(block_type="extract", failure=None)
    m.count_sample(block_type="extract", failure="provider_http_error")

    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert (
        got[
            ("quorum_step_queue_wait_seconds_count", (("block_type", "function"), ("kind", "step")))
        ]
        == 1
    )
    assert (
        got[("quorum_step_queue_wait_seconds_sum", (("block_type", "function"), ("kind", "step")))]
        == 0.2
    )
    assert (
        got[
            (
                "quorum_block_run_seconds_count",
                (("block_type", "extract"), ("outcome", "completed")),
            )
        ]
        == 1
    )
    assert got[("quorum_consensus_samples_total", (("block_type", "extract"),))] == 2
    key = (
        "quorum_consensus_sample_failures_total",
        (("block_type", "extract"), ("reason", "provider_http_error")),
    )
    assert got[key] == 1
    text = generate_latest(registry).decode()
    families = {
        f.name for f in text_string_to_metric_families(text) if not f.name.endswith("_created")
    }
    # The parser names counter families without "_total".
    assert {f.removesuffix("_total") for f in WORKER_FAMILIES} == families


def test_no_port_no_metrics() -> None:
    assert isinstance(worker_metrics(Settings()), NoMetrics)
    assert isinstance(worker_metrics(Settings(worker_metrics_port=9400)), PrometheusMetrics)


def test_the_port_is_a_setting() -> None:
    assert Settings.from_env({"QUORUM_WORKER_METRICS_PORT": "9400"}).worker_metrics_port == 9400
    assert Settings.from_env({}).worker_metrics_port == 0
