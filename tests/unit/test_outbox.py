"""engine.outbox: rows whose message was lost are published again."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from engine.claims import claim
from engine.clock import utcnow
from engine.db.models import (
    Step,
)
from engine.outbox import sweep
from engine.ports import Work, WorkKind
from tests.support.harness import (
    Harness,
    linear_graph,
)


def test_outbox_republishes_a_lost_message(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 5}, publish=False)  # the API died before publishing
    start_id = h.steps(run_id)["start"].id
    assert h.steps(run_id)["start"].state == "pending"
    assert sweep(h.db, h.dispatcher, older_than_s=3600) == 0  # too young to be lost
    assert h.dispatcher.queue == []
    assert sweep(h.db, h.dispatcher, older_than_s=0) == 1
    assert h.dispatcher.queue == [Work(kind=WorkKind.STEP, id=start_id)]
    start = h.steps(run_id)["start"]
    assert start.state == "queued"
    assert start.queued_at is not None
    h.drain()
    assert h.assert_settled(run_id).status == "completed"
    assert h.output(run_id) == {"result": 10}
    assert sweep(h.db, h.dispatcher, older_than_s=0) == 0  # nothing open any more


def test_outbox_republishes_queued_rows_and_restarts_their_clock(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 5})
    h.dispatcher.queue.clear()  # the broker lost the message after it was marked queued
    old = utcnow() - timedelta(hours=1)
    with h.db.transaction() as s:
        s.execute(update(Step).where(Step.run_id == run_id).values(queued_at=old))
    assert sweep(h.db, h.dispatcher, older_than_s=60) == 1
    start = h.steps(run_id)["start"]
    assert start.state == "queued"
    assert start.queued_at is not None and start.queued_at.replace(tzinfo=None) > old.replace(
        tzinfo=None
    )
    assert sweep(h.db, h.dispatcher, older_than_s=60) == 0  # the clock restarted
    h.drain()
    assert h.assert_settled(run_id).status == "completed"


def test_outbox_republishes_a_running_row_whose_holder_died_with_its_message(
    h: Harness,
) -> None:
    """A worker killed while the broker lost its message: only the sweeper can save the row."""
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 5})
    h.deliver(h.dispatcher.queue.pop(0))  # start ran; the next step is queued
    step_id = next(s.id for k, s in h.steps(run_id).items() if k != "start")
    lost = h.dispatcher.queue.copy()
    h.dispatcher.queue.clear()
    with h.db.transaction() as s:  # claimed by a worker that then died, message gone
        claim(
            s, Step, step_id, worker="gone:1", holder_alive=lambda _: None, lease=timedelta(hours=1)
        )
    assert lost == [Work(kind=WorkKind.STEP, id=step_id)]
    alive = {"gone:1": True}
    assert (
        sweep(h.db, h.dispatcher, older_than_s=0, lease_s=3600, holder_alive=lambda w: alive.get(w))
        == 0
    )  # its holder still lives
    alive["gone:1"] = False
    assert (
        sweep(h.db, h.dispatcher, older_than_s=0, lease_s=3600, holder_alive=lambda w: alive.get(w))
        == 1
    )
    assert h.dispatcher.queue == [Work(kind=WorkKind.STEP, id=step_id)]
    unknown_host = sweep(
        h.db, h.dispatcher, older_than_s=0, lease_s=3600, holder_alive=lambda w: None
    )
    assert unknown_host == 0  # another host: only an expired lease tells
    h.dispatcher.queue.clear()
    with h.db.transaction() as s:  # nobody renewed its lease: it ran out
        expired = utcnow() - timedelta(seconds=1)
        s.execute(update(Step).where(Step.id == step_id).values(leased_until=expired))
    assert sweep(h.db, h.dispatcher, older_than_s=0, lease_s=3600, holder_alive=lambda w: None) == 1
    rescuer = h.orchestrator("test-host:9", lambda holder: False)  # it knows the holder died
    rescuer.run_step(h.dispatcher.queue.pop(0).id)
    h.drain()
    assert h.assert_settled(run_id).status == "completed"
    assert (
        h.steps(run_id)[next(k for k in h.steps(run_id) if k not in ("start", "end"))].attempt == 2
    )
