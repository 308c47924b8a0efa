"""engine.worker.steps: a step message claimed, run and settled (failures, fencing)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from engine.claims import claim
from engine.clock import utcnow
from engine.db.models import (
    Step,
)
from engine.execute import unwrap
from engine.worker.context import FanOut
from engine.worker.steps import claim_step, settle_step
from tests.support.harness import (
    Harness,
    block,
    edge,
    fn,
    for_each_graph,
    linear_graph,
    start_block,
)


def test_failing_block_fails_the_run_and_closes_the_rest(h: Harness) -> None:
    blocks = [
        start_block("n"),
        fn("bad", "boom"),
        fn("ok1", "inc"),
        fn("ok2", "inc"),
        block("end", "end"),
    ]
    edges = [
        edge("start", "n", "bad", "value"),
        edge("start", "n", "ok1", "value"),
        edge("start", "n", "ok2", "value"),
        edge("ok1", "output", "end", "a"),
        edge("ok2", "output", "end", "b"),
    ]
    wf = h.workflow(blocks, edges)
    run_id = h.start(wf, {"n": 1})
    h.drain("fifo")
    run = h.assert_settled(run_id)
    assert run.status == "failed"
    assert run.termination_reason == "execution_error"
    steps = h.steps(run_id)
    assert run.error == {
        "step_id": steps["bad"].id,
        "block_id": "bad",
        "type": "ValueError",
        "message": "boom",
    }
    assert steps["bad"].state == "error"
    assert (steps["bad"].error_type, steps["bad"].error_message) == ("ValueError", "boom")
    for sid in ("ok1", "ok2"):
        assert steps[sid].state == "skipped"
        assert steps[sid].reason == "run_failed"
    assert "end" not in steps
    assert h.calls["inc"] == 0  # the messages for ok1/ok2 arrived after the end
    assert h.output(run_id) is None


def test_failure_cancels_a_running_sibling_and_discards_its_result(h: Harness) -> None:
    other = h.orchestrator("test-host:2", lambda holder: None)
    run_ids: list[str] = []

    def slow(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        # While this step runs, another worker runs the failing sibling.
        with h.db.sessions() as s:
            bad = s.scalar(select(Step.id).where(Step.run_id == run_ids[0], Step.block_id == "bad"))
        assert bad is not None
        other.run_step(bad)
        return "late"

    h.register("slow", slow)
    blocks = [start_block("n"), fn("bad", "boom"), fn("slow", "slow"), block("end", "end")]
    edges = [
        edge("start", "n", "bad", "value"),
        edge("start", "n", "slow", "value"),
        edge("slow", "output", "end", "x"),
    ]
    wf = h.workflow(blocks, edges)
    run_ids.append(h.start(wf, {"n": 1}))
    h.deliver(h.dispatcher.queue.pop(0))  # start
    slow_work = next(w for w in h.dispatcher.queue if w.id == h.steps(run_ids[0])["slow"].id)
    h.dispatcher.queue.remove(slow_work)
    h.deliver(slow_work)
    h.drain()
    run = h.assert_settled(run_ids[0])
    assert run.status == "failed"
    assert run.termination_reason == "execution_error"
    steps = h.steps(run_ids[0])
    assert steps["slow"].state == "cancelled"
    assert steps["slow"].reason == "run_failed"
    assert steps["slow"].outputs is None
    assert "end" not in steps
    assert [w.id for w in h.dispatcher.revoked] == [steps["slow"].id]


def test_duplicate_delivery_executes_once(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 1})
    h.dispatcher.queue.extend(list(h.dispatcher.queue))  # the start message twice
    h.deliver(h.dispatcher.queue.pop(0))
    f_work = [w for w in h.dispatcher.queue if w.id == h.steps(run_id)["f"].id]
    h.dispatcher.queue.extend(f_work * 2)  # and f three times
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    assert h.calls["double"] == 1
    assert len(h.steps(run_id)) == 3
    assert h.steps(run_id)["f"].attempt == 1
    assert h.output(run_id) == {"result": 2}


def test_duplicate_delivered_while_running_is_dropped(h: Harness) -> None:
    other = h.orchestrator("test-host:2", lambda holder: None)  # holder unknown, lease fresh
    run_ids: list[str] = []

    def reentrant(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        with h.db.sessions() as s:
            sid = s.scalar(select(Step.id).where(Step.run_id == run_ids[0], Step.block_id == "f"))
        assert sid is not None
        other.run_step(sid)  # a redelivered copy reaches another worker meanwhile
        return "once"

    h.register("reentrant", reentrant)
    blocks = [start_block("doc"), fn("f", "reentrant"), block("end", "end")]
    edges = [edge("start", "doc", "f", "value"), edge("f", "output", "end", "result")]
    run_ids.append(h.start(h.workflow(blocks, edges), {"doc": 1}))
    h.drain()
    h.assert_settled(run_ids[0])
    assert h.calls["reentrant"] == 1
    f = h.steps(run_ids[0])["f"]
    assert (f.attempt, f.worker) == (1, "test-host:1")
    assert h.output(run_ids[0]) == {"result": "once"}


def test_takeover_from_a_dead_holder_fences_the_old_attempt(h: Harness) -> None:
    other = h.orchestrator("test-host:2", lambda holder: False)  # the holder is dead
    run_ids: list[str] = []

    def twice(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        if h.calls["twice"] == 1:
            with h.db.sessions() as s:
                sid = s.scalar(
                    select(Step.id).where(Step.run_id == run_ids[0], Step.block_id == "f")
                )
            assert sid is not None
            other.run_step(sid)  # the first holder is declared dead: taken over
            return "first"
        return "second"

    h.register("twice", twice)
    blocks = [start_block("doc"), fn("f", "twice"), block("end", "end")]
    edges = [edge("start", "doc", "f", "value"), edge("f", "output", "end", "result")]
    run_ids.append(h.start(h.workflow(blocks, edges), {"doc": 1}))
    h.drain()
    run = h.assert_settled(run_ids[0])
    assert run.status == "completed"
    assert h.calls["twice"] == 2
    f = h.steps(run_ids[0])["f"]
    assert (f.attempt, f.worker) == (2, "test-host:2")
    assert unwrap(f.outputs) == {"output": "second"}
    assert h.output(run_ids[0]) == {"result": "second"}  # the stale "first" was discarded
    assert sum(1 for k in h.steps(run_ids[0]) if k.startswith("end")) == 1


def test_a_row_waiting_on_its_children_is_never_taken_over(h: Harness) -> None:
    wf = h.workflow(*for_each_graph())
    run_id = h.start(wf, {"items": [1, 2]})
    h.deliver(h.dispatcher.queue.pop(0))  # start
    h.deliver(h.dispatcher.queue.pop(0))  # pages: fans out, stays running with 2 children
    pages = h.steps(run_id)["pages"]
    assert (pages.state, pages.open_children) == ("running", 2)
    later = utcnow() + timedelta(days=1)  # the lease ran out long ago
    with h.db.transaction() as s:
        taken = claim(
            s,
            Step,
            pages.id,
            worker="w:2",
            holder_alive=lambda x: False,
            lease=timedelta(seconds=1),
            now=later,
        )
    assert taken is None
    # A redelivered message for it changes nothing either.
    h.orch.run_step(pages.id)
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    assert h.output(run_id) == {"results": [2, 4]}
    assert h.steps(run_id)["pages"].attempt == 1


def test_a_stale_fan_out_creates_nothing(h: Harness) -> None:
    wf = h.workflow(*for_each_graph())
    run_id = h.start(wf, {"items": [1, 2]})
    h.deliver(h.dispatcher.queue.pop(0))  # start
    pages_id = h.steps(run_id)["pages"].id
    job = claim_step(h.orch.message(), pages_id)
    assert job is not None
    # Meanwhile the row was taken over by another attempt.
    with h.db.transaction() as s:
        s.execute(update(Step).where(Step.id == pages_id).values(attempt=job.attempt + 1))
    settle_step(h.orch.message(), job, FanOut(items=[1, 2]), claim_next=False)
    assert set(h.steps(run_id)) == {"start", "pages"}
    assert h.steps(run_id)["pages"].open_children == 0
