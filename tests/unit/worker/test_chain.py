"""engine.worker.chain: in-process successors settled together, one commit per batch."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from engine.db.models import RunEvent
from engine.settings import Settings
from engine.worker.entry import Worker
from tests.support.harness import Died, Harness, block, edge, fn, start_block

DEAD = "test-host:666"


def chain(*names: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """start -> each named function in turn -> end, the value passed along."""
    blocks = [start_block("doc"), *(fn(n, n) for n in names), block("end", "end")]
    ids = ["start", *names, "end"]
    edges = [
        edge(a, "doc" if a == "start" else "output", b, "result" if b == "end" else "value")
        for a, b in itertools.pairwise(ids)
    ]
    return blocks, edges


def dying_worker(h: Harness, settings: Settings) -> Worker:
    h.orch.settings = settings
    # The process that took over knows the dying one is gone.
    h.orch.holder_alive = lambda holder: False if holder == DEAD else None
    return Worker(
        db=h.db,
        dispatcher=h.dispatcher,
        tools=h.orch.tools,
        settings=settings,
        worker=DEAD,
        holder_alive=lambda holder: None,
    )


def test_a_chain_of_quick_steps_commits_once(h: Harness, tmp_path: Path) -> None:
    h.orch.settings = Settings(data_dir=str(tmp_path), chain_batch_ms=60_000)
    for name in ("a", "b", "c"):
        h.register(name, lambda i, p: i["value"] + 1)
    run_id = h.start(h.workflow(*chain("a", "b", "c")), {"doc": 1})
    commits: list[int] = []

    def on_commit(conn: Any) -> None:
        commits.append(1)

    event.listen(h.db.engine, "commit", on_commit)
    h.deliver(h.dispatcher.queue.pop(0))
    event.remove(h.db.engine, "commit", on_commit)
    run = h.assert_settled(run_id)
    assert run.status == "completed" and h.output(run_id) == {"result": 4}
    assert run.steps_done == run.steps_total == 5
    # start: claim, then settle (claiming a); a, b, c and end: one commit.
    assert len(commits) == 3
    assert h.dispatcher.queue == []
    # The events still show every step running, then completed, and the final progress.
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
    for block_id in ("start", "a", "b", "c", "end"):
        assert states.count((block_id, "running")) == 1
        assert states.count((block_id, "completed")) == 1
        assert states.index((block_id, "running")) < states.index((block_id, "completed"))
    runs = [e.data for e in events if e.kind == "run"]
    assert runs[-1]["status"] == "completed"
    assert runs[-1]["progress"] == {"steps_total": 5, "steps_done": 5}
    # The batch's steps events are one of the steps as created, then one of every step's
    # final state (not one statement part per settle).
    created, final = [
        [(st["block_id"], st["status"]) for st in e.data["steps"]]
        for e in events
        if e.kind == "steps"
    ][-2:]
    assert created == [("b", "running"), ("c", "running"), ("end", "running")]
    assert final == [(b, "completed") for b in ("a", "b", "c", "end")]


def test_a_crash_inside_a_batch_reruns_only_its_uncommitted_steps(
    h: Harness, tmp_path: Path
) -> None:
    """Committed outcomes stay as reported; the rolled-back steps run again."""
    window_ms = 50
    dying = dying_worker(h, Settings(data_dir=str(tmp_path), chain_batch_ms=window_ms))

    def slow(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        time.sleep(2 * window_ms / 1000)  # outlasts the window: its batch commits after it
        return inputs["value"] + 1

    def dies_once(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        if h.calls["dies"] == 1:
            raise Died
        return inputs["value"] + 1

    h.register("slow", slow)
    h.register("f", lambda i, p: i["value"] + 1)
    h.register("dies", dies_once)
    run_id = h.start(h.workflow(*chain("slow", "f", "dies")), {"doc": 1})
    message = h.dispatcher.queue.pop(0)
    with pytest.raises(Died):
        dying.run_step(message.id)
    # slow's batch committed; f's batch (f settled, dies claimed) rolled back with the kill.
    assert h.states(run_id) == {"start": "completed", "slow": "completed", "f": "running"}
    reported = {k: (v.outputs, v.completed_at, v.attempt) for k, v in h.steps(run_id).items()}
    assert h.calls == {"slow": 1, "f": 1, "dies": 1}
    assert h.run(run_id).steps_done == 2

    h.deliver(message)  # the broker gives the message back; another process gets it
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed" and h.output(run_id) == {"result": 4}
    assert run.steps_done == run.steps_total == 5
    # Only the uncommitted steps ran again; what was committed is unchanged.
    assert h.calls == {"slow": 1, "f": 2, "dies": 2}
    after = h.steps(run_id)
    for name in ("start", "slow"):
        assert (after[name].outputs, after[name].completed_at, after[name].attempt) == reported[
            name
        ]
    assert after["f"].attempt == 2


def test_a_fault_inside_a_batch_is_met_again_step_by_step(h: Harness, tmp_path: Path) -> None:
    """An orchestration fault rolls the batch back; the chain goes on one commit a step."""
    h.orch.settings = Settings(
        data_dir=str(tmp_path),
        chain_batch_ms=60_000,
        fault_points="orchestrator.after_claim:c",
    )
    for name in ("a", "b", "c"):
        h.register(name, lambda i, p: i["value"] + 1)
    run_id = h.start(h.workflow(*chain("a", "b", "c")), {"doc": 1})
    h.deliver(h.dispatcher.queue.pop(0))
    h.drain()
    run = h.assert_settled(run_id)
    # The fault is met again at c, step by step, where the safety net fails the run; a and
    # b ran again (at least once) and completed.
    states = h.states(run_id)
    assert states["a"] == states["b"] == "completed"
    assert states["c"] == "cancelled"
    assert run.status == "failed" and run.termination_reason == "finally_safety_net"
    assert h.calls["a"] == 2 and h.calls["b"] == 2 and h.calls["c"] == 0
