"""engine.run.control: pause, resume and cancel a run while its steps are in flight."""

from __future__ import annotations

from typing import Any

import pytest

from engine.outbox import sweep
from engine.ports import Work, WorkKind
from engine.run.control import cancel_run, pause_run, resume_run
from tests.support.harness import (
    Harness,
    block,
    diamond_graph,
    edge,
    fn,
    linear_graph,
    start_block,
)


def test_late_completion_after_cancel_is_discarded(h: Harness) -> None:
    run_ids: list[str] = []
    revoked: list[Work] = []

    def cancels(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        with h.db.transaction() as s:
            run, revoke = cancel_run(s, h.org_id, run_ids[0])
            assert run.status == "cancelled"
            revoked.extend(revoke)
        return "too late"

    h.register("cancels", cancels)
    blocks = [start_block("doc"), fn("f", "cancels"), fn("g", "double"), block("end", "end")]
    edges = [
        edge("start", "doc", "f", "value"),
        edge("f", "output", "g", "value"),
        edge("g", "output", "end", "result"),
    ]
    run_ids.append(h.start(h.workflow(blocks, edges), {"doc": 1}))
    h.drain()
    run = h.assert_settled(run_ids[0])
    assert run.status == "cancelled"
    assert run.termination_reason == "cancelled"
    steps = h.steps(run_ids[0])
    assert set(steps) == {"start", "f"}
    assert steps["f"].state == "cancelled"
    assert steps["f"].reason == "run_cancelled"
    assert steps["f"].outputs is None
    assert [w.id for w in revoked] == [steps["f"].id]
    assert h.calls["double"] == 0
    assert (run.steps_total, run.steps_done) == (2, 2)


def test_cancel_closes_queued_steps_and_their_messages_are_dropped(h: Harness) -> None:
    wf = h.workflow(*diamond_graph())
    run_id = h.start(wf, {"n": 1})
    h.deliver(h.dispatcher.queue.pop(0))  # start: a and b are queued
    with h.db.transaction() as s:
        _, revoke = cancel_run(s, h.org_id, run_id)
    assert revoke == []
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "cancelled"
    assert h.states(run_id) == {
        "start": "completed",
        "a": "cancelled",
        "b": "cancelled",
    }
    assert h.calls["double"] == h.calls["inc"] == 0


def test_steps_created_while_paused_wait_until_resume(h: Harness) -> None:
    run_ids: list[str] = []

    def pauses(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        with h.db.transaction() as s:
            assert pause_run(s, h.org_id, run_ids[0]).status == "paused"
        return inputs["value"]

    h.register("pauses", pauses)
    blocks = [start_block("doc"), fn("f", "pauses"), fn("g", "double"), block("end", "end")]
    edges = [
        edge("start", "doc", "f", "value"),
        edge("f", "output", "g", "value"),
        edge("g", "output", "end", "result"),
    ]
    run_ids.append(h.start(h.workflow(blocks, edges), {"doc": 4}))
    h.drain()
    run = h.run(run_ids[0])
    assert run.status == "paused"
    assert h.states(run_ids[0]) == {"start": "completed", "f": "completed", "g": "pending"}
    assert h.calls["double"] == 0
    # The outbox leaves a paused run alone.
    assert sweep(h.db, h.dispatcher, older_than_s=0) == 0
    with h.db.transaction() as s:
        resumed, work = resume_run(s, h.org_id, run_ids[0])
        assert resumed.status == "running"
    g_id = h.steps(run_ids[0])["g"].id
    assert work == [Work(kind=WorkKind.STEP, id=g_id)]
    h.publish(work)
    h.drain()
    run = h.assert_settled(run_ids[0])
    assert run.status == "completed"
    assert h.output(run_ids[0]) == {"result": 8}


def test_pause_before_start_hands_the_step_back(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 3})
    with h.db.transaction() as s:
        pause_run(s, h.org_id, run_id)
    h.drain()
    assert h.run(run_id).status == "paused"
    start = h.steps(run_id)["start"]
    assert start.state == "queued"
    with h.db.transaction() as s:
        _, work = resume_run(s, h.org_id, run_id)
    assert work == [Work(kind=WorkKind.STEP, id=start.id)]
    h.publish(work)
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    assert h.output(run_id) == {"result": 6}


def test_resume_after_the_last_step_settled_while_paused_completes(h: Harness) -> None:
    run_ids: list[str] = []

    def pauses(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        with h.db.transaction() as s:
            pause_run(s, h.org_id, run_ids[0])
        return "done"

    h.register("pauses", pauses)
    # The paused step is the last one: nothing is left for a later settlement to close.
    wf = h.workflow([start_block("doc"), fn("f", "pauses")], [edge("start", "doc", "f", "value")])
    run_ids.append(h.start(wf, {"doc": 1}))
    h.drain()
    assert h.run(run_ids[0]).status == "paused"
    assert h.states(run_ids[0]) == {"start": "completed", "f": "completed"}
    with h.db.transaction() as s:
        resumed, work = resume_run(s, h.org_id, run_ids[0])
    assert work == []
    assert resumed.status == "completed"
    run = h.assert_settled(run_ids[0])
    assert run.status == "completed"
    assert run.termination_reason is None


def test_pause_and_resume_refuse_the_wrong_status(h: Harness) -> None:
    from engine.errors import Conflict

    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 1})
    with h.db.transaction() as s, pytest.raises(Conflict):
        resume_run(s, h.org_id, run_id)
    h.drain()
    with h.db.transaction() as s, pytest.raises(Conflict):
        pause_run(s, h.org_id, run_id)
    with h.db.transaction() as s, pytest.raises(Conflict):
        cancel_run(s, h.org_id, run_id)
    assert h.run(run_id).status == "completed"
