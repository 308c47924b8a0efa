"""engine.engine_stats: runs, queues, the outbox backlog and the counters, as rows say."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from engine.clock import utcnow
from engine.db.models import Run, Step
from engine.engine_stats import read_stats
from engine.functions import FunctionRegistry
from engine.outbox import sweep
from engine.reaper import reap
from engine.settings import Settings
from engine.testing import InProcessEngine

GRAPH: dict[str, Any] = {
    "blocks": [
        {"id": "start", "type": "start", "config": {"inputs": {"doc": {"type": "json"}}}},
        {"id": "f", "type": "function", "config": {"function": "double"}},
        {"id": "end", "type": "end"},
    ],
    "edges": [
        {"source": "start", "source_handle": "doc", "target": "f", "target_handle": "value"},
        {"source": "f", "source_handle": "output", "target": "end", "target_handle": "result"},
    ],
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[InProcessEngine]:
    functions = FunctionRegistry()
    functions.register("double", lambda inputs, params: inputs["value"] * 2)
    e = InProcessEngine(Settings(data_dir=str(tmp_path), inline_successors=0), functions=functions)
    yield e
    e.close()


def counters(e: InProcessEngine) -> dict[tuple[str, str], int]:
    stats = read_stats(e.db, outbox_after_s=60)
    return {(c.name, ",".join(c.labels.values())): c.value for c in stats.counters}


def test_a_fresh_database_reads_all_zero(engine: InProcessEngine) -> None:
    stats = read_stats(engine.db, outbox_after_s=60)
    assert set(stats.runs_by_status.values()) == {0}
    assert "waiting_for_user_input" in stats.runs_by_status
    assert set(stats.queues) == {"step", "execution", "sample"}
    assert all(
        q.queued == 0 and q.oldest_age_s == 0 and q.backlog == 0 for q in stats.queues.values()
    )
    assert stats.counters == []


def test_queued_rows_their_oldest_age_and_the_backlog(engine: InProcessEngine) -> None:
    run_id = engine.start(engine.workflow(GRAPH), {"doc": 2})
    stats = read_stats(engine.db, outbox_after_s=60)
    assert stats.runs_by_status["not_started"] == 1
    assert stats.queues["step"].queued == 1
    assert stats.queues["step"].oldest_age_s < 60
    assert stats.queues["step"].backlog == 0

    with engine.db.transaction() as s:
        s.execute(
            update(Step)
            .where(Step.run_id == run_id)
            .values(queued_at=utcnow() - timedelta(seconds=120))
        )
    stats = read_stats(engine.db, outbox_after_s=60)
    assert 119 < stats.queues["step"].oldest_age_s < 180
    assert stats.queues["step"].backlog == 1
    assert stats.queues["execution"].queued == 0

    # The sweeper publishes the lost row again and counts it; its clock restarts.
    assert sweep(engine.db, engine.dispatcher, older_than_s=60) == 1
    assert counters(engine) == {("outbox_republished", ""): 1}
    assert read_stats(engine.db, outbox_after_s=60).queues["step"].backlog == 0

    engine.drain()
    stats = read_stats(engine.db, outbox_after_s=60)
    assert stats.runs_by_status["completed"] == 1
    assert stats.queues["step"].queued == 0


def test_a_reaped_run_counts_as_a_stale_run_reaper_termination(engine: InProcessEngine) -> None:
    run_id = engine.start(engine.workflow(GRAPH), {"doc": 2})
    with engine.db.transaction() as s:
        s.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(status="started", updated_at=utcnow() - timedelta(hours=2))
        )
    assert reap(engine.db, engine.dispatcher, default_after_s=60) == 1

    stats = read_stats(engine.db, outbox_after_s=60)
    assert stats.runs_by_status["failed"] == 1
    assert counters(engine) == {("run_terminations", "stale_run_reaper"): 1}


def test_a_failing_block_counts_as_an_execution_error_termination(tmp_path: Path) -> None:
    functions = FunctionRegistry()

    def boom(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        raise ValueError("boom")

    functions.register("double", boom)
    e = InProcessEngine(Settings(data_dir=str(tmp_path)), functions=functions)
    try:
        run_id = e.run_to_rest(GRAPH, {"doc": 2})
        assert e.run(run_id).status == "failed"
        assert counters(e) == {("run_terminations", "execution_error"): 1}
    finally:
        e.close()


def test_the_finally_safety_net_counts_its_terminations(tmp_path: Path) -> None:
    functions = FunctionRegistry()
    functions.register("double", lambda inputs, params: inputs["value"] * 2)
    settings = Settings(data_dir=str(tmp_path), fault_points="orchestrator.after_claim:f")
    e = InProcessEngine(settings, functions=functions)
    try:
        run_id = e.run_to_rest(GRAPH, {"doc": 2})
        assert e.run(run_id).termination_reason == "finally_safety_net"
        assert counters(e) == {("run_terminations", "finally_safety_net"): 1}
    finally:
        e.close()
