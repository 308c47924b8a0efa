"""engine.reaper: runs without progress are failed, paused ones are not."""

from __future__ import annotations

from datetime import timedelta

from engine.claims import claim
from engine.db.models import (
    Step,
)
from engine.reaper import reap
from engine.run.control import pause_run
from tests.support.harness import (
    Harness,
    backdate,
    diamond_graph,
    linear_graph,
)


def test_reaper_fails_a_stale_run_but_not_a_paused_one(h: Harness) -> None:
    wf = h.workflow(*diamond_graph(), settings={"stale_after_s": 5})
    stale = h.start(wf, {"n": 1})
    paused = h.start(wf, {"n": 1})
    fresh = h.start(wf, {"n": 1})
    # Every run's start step runs; then the workers go quiet.
    for _ in range(3):
        h.deliver(h.dispatcher.queue.pop(0))
    h.dispatcher.queue.clear()
    with h.db.transaction() as s:
        pause_run(s, h.org_id, paused)
    # One step of the stale run is stuck "running" on a worker that vanished.
    a_id = h.steps(stale)["a"].id
    with h.db.transaction() as s:
        assert (
            claim(
                s,
                Step,
                a_id,
                worker="ghost:9",
                holder_alive=lambda x: None,
                lease=timedelta(hours=1),
            )
            is not None
        )
    backdate(h, stale)
    backdate(h, paused)
    assert reap(h.db, h.dispatcher, default_after_s=3600) == 1
    run = h.assert_settled(stale)
    assert run.status == "failed"
    assert run.termination_reason == "stale_run_reaper"
    assert run.error is not None and run.error["type"] == "stale_run"
    assert h.states(stale) == {"start": "completed", "a": "cancelled", "b": "skipped"}
    assert [w.id for w in h.dispatcher.revoked] == [a_id]
    assert h.run(paused).status == "paused"
    assert h.run(fresh).status == "running"
    # A second reaper pass finds nothing more to do.
    assert reap(h.db, h.dispatcher, default_after_s=3600) == 0


def test_reaper_uses_the_default_limit_without_a_setting(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 1})
    h.deliver(h.dispatcher.queue.pop(0))
    backdate(h, run_id, hours=0.5)
    assert reap(h.db, h.dispatcher, default_after_s=3600) == 0
    assert h.run(run_id).status == "running"
    assert reap(h.db, h.dispatcher, default_after_s=600) == 1
    assert h.run(run_id).status == "failed"
