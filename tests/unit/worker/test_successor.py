"""engine.worker.successor: a ready successor runs in this process, without a message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.settings import Settings
from engine.worker.entry import Worker
from tests.support.harness import (
    Died,
    Harness,
    block,
    diamond_graph,
    edge,
    fn,
    linear_graph,
    start_block,
)


def test_a_ready_successor_runs_in_process_without_a_message(h: Harness, tmp_path: Path) -> None:
    h.orch.settings = Settings(data_dir=str(tmp_path), inline_successors=100)
    wf = h.workflow(*diamond_graph())
    run_id = h.start(wf, {"n": 3})
    first = h.dispatcher.queue.pop(0)
    h.deliver(first)
    # One branch ran in-process (its join waits for the other): the other branch went to
    # the broker, the in-process one not at all.
    assert len(h.dispatcher.queue) == 1
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    assert run.steps_done == run.steps_total == 5


def test_a_chained_step_costs_one_transaction(h: Harness, tmp_path: Path) -> None:
    """Settling a step claims the successor it made ready in the same commit."""
    from sqlalchemy import event

    from engine.db.models import RunEvent

    # One commit per step (engine.worker.chain's batches are tested on their own).
    h.orch.settings = Settings(data_dir=str(tmp_path), inline_successors=100, chain_batch_ms=0)
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 21})
    commits: list[int] = []

    def on_commit(conn: Any) -> None:
        commits.append(1)

    event.listen(h.db.engine, "commit", on_commit)
    h.deliver(h.dispatcher.queue.pop(0))
    event.remove(h.db.engine, "commit", on_commit)
    run = h.assert_settled(run_id)
    assert run.status == "completed" and h.output(run_id) == {"result": 42}
    # start: claim + settle (claiming f); f: settle (claiming end); end: settle.
    assert len(commits) == 4
    # Every step went through running, and the run's events describe each commit.
    with h.db.sessions() as s:
        events = s.scalars(
            select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq)
        ).all()
    states = [
        (st["block_id"], st["status"])
        for e in events
        if e.kind == "steps"
        for st in e.data["steps"]
    ]
    for block_id in ("start", "f", "end"):
        assert (block_id, "running") in states
        assert (block_id, "completed") in states
    runs = [e.data for e in events if e.kind == "run"]
    assert runs[-1]["status"] == "completed"
    assert runs[-1]["progress"] == {"steps_total": 3, "steps_done": 3}
    # Nothing was published for the steps run in-process.
    assert h.dispatcher.queue == []


def test_a_chain_left_running_by_a_dead_process_is_recovered_by_its_redelivered_message(
    h: Harness, tmp_path: Path
) -> None:
    settings = Settings(data_dir=str(tmp_path), inline_successors=100)
    dying = Worker(
        db=h.db,
        dispatcher=h.dispatcher,
        tools=h.orch.tools,
        settings=settings,
        worker="test-host:666",
        holder_alive=lambda holder: None,
    )
    h.orch.settings = settings
    h.orch.holder_alive = lambda holder: False if holder == "test-host:666" else None
    died = []

    def dies_once(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        if not died:
            died.append(1)
            raise Died
        return inputs["value"] * 2

    h.register("dies_once", dies_once)
    blocks = [start_block("doc"), fn("f", "dies_once"), block("end", "end")]
    edges = [edge("start", "doc", "f", "value"), edge("f", "output", "end", "result")]
    run_id = h.start(h.workflow(blocks, edges), {"doc": 21})
    message = h.dispatcher.queue.pop(0)
    with pytest.raises(Died):
        dying.run_step(message.id)  # start settled, f claimed in-process, then the kill
    assert h.states(run_id) == {"start": "completed", "f": "running"}
    assert h.dispatcher.queue == []  # nothing was published for f
    # The broker gives the unacknowledged message back; another process gets it.
    h.deliver(message)
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    assert h.output(run_id) == {"result": 42}
    assert h.steps(run_id)["f"].attempt == 2


def test_a_redelivered_message_of_a_live_holder_recovers_nothing(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 21})
    first = h.dispatcher.queue[0]
    h.drain()
    assert h.run(run_id).status == "completed"
    h.deliver(first)  # a duplicate: its holder (this process) is not known to be dead
    assert h.dispatcher.queue == []
