"""engine.handoff: publish, then mark queued; a refused publish leaves rows to the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.db.models import Step
from engine.handoff import hand_off, publish, revoke
from engine.ports import Work, WorkKind
from engine.run.start import start_run
from engine.settings import Settings
from engine.testing import BrokerDown, InProcessEngine, QueueDispatcher

GRAPH = {
    "blocks": [
        {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
        {"id": "end", "type": "end", "config": {}},
    ],
    "edges": [
        {"source": "start", "source_handle": "x", "target": "end", "target_handle": "x"},
    ],
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[InProcessEngine]:
    e = InProcessEngine(Settings(data_dir=str(tmp_path), provider="local"))
    yield e
    e.close()


def _pending_start(engine: InProcessEngine) -> tuple[str, list[Work]]:
    with engine.db.transaction() as s:
        started = start_run(s, engine.org_id, workflow_id=engine.workflow(GRAPH), inputs={"x": 1})
        return started.run.id, started.work


def _state(engine: InProcessEngine, run_id: str) -> str:
    return next(iter(engine.steps(run_id).values())).state


def test_a_published_row_is_marked_queued(engine: InProcessEngine) -> None:
    run_id, work = _pending_start(engine)
    assert hand_off(engine.db, engine.dispatcher, work, mark={Step: [w.id for w in work]})
    assert engine.dispatcher.queue == work
    assert _state(engine, run_id) == "queued"


def test_a_refused_publish_leaves_the_row_pending(engine: InProcessEngine) -> None:
    run_id, work = _pending_start(engine)
    engine.dispatcher.down = True
    assert not hand_off(engine.db, engine.dispatcher, work, mark={Step: [w.id for w in work]})
    assert _state(engine, run_id) == "pending"
    with pytest.raises(BrokerDown):
        hand_off(engine.db, engine.dispatcher, work, mark={Step: []}, strict=True)


def test_revoke_is_best_effort() -> None:
    dispatcher = QueueDispatcher()
    dispatcher.down = True
    revoke(dispatcher, [Work(kind=WorkKind.STEP, id="s1")])  # does not raise
    assert publish(dispatcher, []) is True  # nothing to publish: nothing to refuse
