"""engine.observe: what the orchestrator reports through the Metrics port, and that a
faulty metrics sink never fails the work it observes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from engine.db.models import BlockExecution, ConsensusSample, Step
from engine.execute import BlockFailed, Outcome
from engine.functions import FunctionRegistry
from engine.observe import observe_block_run, observe_claim, observe_sample, outcome_of
from engine.providers.local import LocalProvider
from engine.settings import Settings
from engine.testing import FailingSamples, InProcessEngine, RecordingMetrics
from engine.worker.context import AwaitInput, FanOut, FanOutConsensus

SCHEMA = {"type": "object", "properties": {"vendor": {"type": "string"}}}
NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def graph(*blocks: dict[str, Any]) -> dict[str, Any]:
    chain = [
        {"id": "start", "type": "start", "config": {"inputs": {"doc": {"type": "json"}}}},
        *blocks,
        {"id": "end", "type": "end"},
    ]
    handles = {"extract": ("document", "output"), "function": ("value", "output")}
    edges = []
    for source, target in itertools.pairwise(chain):
        out = "doc" if source["type"] == "start" else handles[source["type"]][1]
        into = handles[target["type"]][0] if target["type"] in handles else "result"
        edges.append(
            {
                "source": source["id"],
                "source_handle": out,
                "target": target["id"],
                "target_handle": into,
            }
        )
    return {"blocks": chain, "edges": edges}


def test_a_run_reports_queue_waits_block_runs_and_consensus_samples(tmp_path: Path) -> None:
    metrics = RecordingMetrics()
    functions = FunctionRegistry()
    functions.register("shout", lambda inputs, params: str(inputs["value"]).upper())
    provider = FailingSamples(LocalProvider(), failing=frozenset({1}))
    e = InProcessEngine(
        Settings(data_dir=str(tmp_path)), functions=functions, provider=provider, metrics=metrics
    )
    extract = {"id": "x", "type": "extract", "config": {"schema": SCHEMA, "n_consensus": 3}}
    shout = {"id": "f", "type": "function", "config": {"function": "shout"}}
    run_id = e.run_to_rest(graph(extract, shout), {"doc": "vendor: acme"})
    assert e.run(run_id).status == "completed"
    e.close()

    kinds = {(kind, block_type) for kind, block_type, _ in metrics.queue_waits}
    assert {("step", "start"), ("step", "extract"), ("sample", "")} <= kinds
    assert sum(kind == "sample" for kind, _, _ in metrics.queue_waits) == 3
    assert all(seconds >= 0 for _, _, seconds in metrics.queue_waits)
    runs = [(block_type, outcome) for block_type, outcome, _ in metrics.block_runs]
    # The consensus step fans out first, then settles once its samples are reconciled.
    assert runs.count(("extract", "fanned_out")) == 1
    assert runs.count(("extract", "completed")) == 1
    assert ("function", "completed") in runs and ("start", "completed") in runs
    assert sorted(metrics.samples, key=str) == sorted(
        [("extract", None), ("extract", None), ("extract", "provider_http_error")], key=str
    )


def test_a_failing_block_is_observed_as_failed(tmp_path: Path) -> None:
    metrics = RecordingMetrics()
    functions = FunctionRegistry()

    def boom(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        raise ValueError("boom")

    functions.register("shout", boom)
    e = InProcessEngine(Settings(data_dir=str(tmp_path)), functions=functions, metrics=metrics)
    shout = {"id": "f", "type": "function", "config": {"function": "shout"}}
    e.run_to_rest(graph(shout), {"doc": "a"})
    e.close()
    assert ("function", "failed") in [(b, o) for b, o, _ in metrics.block_runs]


def test_outcomes_by_result() -> None:
    assert outcome_of(Outcome(outputs={}, active=())) == "completed"
    assert outcome_of(BlockFailed("boom", "boom")) == "failed"
    assert outcome_of(FanOut(items=[1])) == "fanned_out"
    assert outcome_of(FanOutConsensus(n=3)) == "fanned_out"
    assert outcome_of(AwaitInput(prompt=None)) == "awaiting"
    assert outcome_of(object()) == "other"


def test_queue_wait_counts_from_queued_at_else_created_at() -> None:
    metrics = RecordingMetrics()
    queued = SimpleNamespace(queued_at=NOW - timedelta(seconds=3), created_at=NOW, block_type="x")
    observe_claim(metrics, Step, SimpleNamespace(row=queued), NOW)
    created = SimpleNamespace(queued_at=None, created_at=NOW - timedelta(seconds=5))
    observe_claim(metrics, ConsensusSample, SimpleNamespace(row=created), NOW)
    # A retry's queued_at lies ahead (its backoff): no negative wait.
    ahead = SimpleNamespace(queued_at=NOW + timedelta(seconds=9), created_at=NOW, block_type="y")
    observe_claim(metrics, BlockExecution, SimpleNamespace(row=ahead), NOW)
    observe_claim(metrics, Step, None, NOW)  # the claim lost: nothing waited
    assert metrics.queue_waits == [
        ("step", "x", 3.0),
        ("sample", "", 5.0),
        ("execution", "y", 0.0),
    ]


def test_a_block_without_a_start_time_is_not_observed() -> None:
    metrics = RecordingMetrics()
    job = SimpleNamespace(started_at=None, block=SimpleNamespace(type="function"))
    observe_block_run(metrics, job, Outcome(outputs={}, active=()), NOW)
    assert metrics.block_runs == []


class Broken:
    def observe_queue_wait(self, *, kind: str, block_type: str, seconds: float) -> None:
        raise RuntimeError("sink down")

    def observe_block_run(self, *, block_type: str, outcome: str, seconds: float) -> None:
        raise RuntimeError("sink down")

    def count_sample(self, *, block_type: str, failure: str | None) -> None:
        raise RuntimeError("sink down")


def test_a_broken_metrics_sink_never_fails_the_work(tmp_path: Path) -> None:
    functions = FunctionRegistry()
    functions.register("shout", lambda inputs, params: str(inputs["value"]).upper())
    e = InProcessEngine(
        Settings(data_dir=str(tmp_path)),
        functions=functions,
        provider=LocalProvider(),
        metrics=Broken(),
    )
    extract = {"id": "x", "type": "extract", "config": {"schema": SCHEMA, "n_consensus": 3}}
    shout = {"id": "f", "type": "function", "config": {"function": "shout"}}
    run_id = e.run_to_rest(graph(extract, shout), {"doc": "vendor: acme"})
    assert e.run(run_id).status == "completed"
    e.close()
    owner = SimpleNamespace(block=SimpleNamespace(type="extract"))
    observe_sample(Broken(), owner, BlockFailed("provider_http_error", "down"))
