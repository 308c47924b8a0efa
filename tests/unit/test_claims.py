"""engine.claims: claim and finish, fenced on the attempt."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine.claims import claim
from engine.clock import utcnow
from engine.db.models import (
    Step,
)
from engine.lifecycle import StepState
from tests.support.harness import (
    Harness,
    linear_graph,
)


def test_claim_and_finish_semantics(h: Harness) -> None:
    run_id = h.start(h.workflow(*linear_graph()), {"doc": 1}, publish=False)
    sid = h.steps(run_id)["start"].id
    t0 = utcnow()
    lease = timedelta(minutes=15)

    def do_claim(worker: str, alive: bool | None, now: Any = None) -> Any:
        with h.db.transaction() as s:
            return claim(
                s, Step, sid, worker=worker, holder_alive=lambda _: alive, lease=lease, now=now
            )

    # pending: the worker beat the API's "mark queued"; both moves are legal.
    first = do_claim("w:1", None, t0)
    assert (first.attempt, first.taken_over) == (1, False)
    assert h.steps(run_id)["start"].queued_at is not None
    # Running and the holder alive or unknown, within its lease: a duplicate (a live
    # holder past its lease is taken over: tests/unit/test_leases.py).
    assert do_claim("w:2", True, t0 + timedelta(minutes=14)) is None
    assert do_claim("w:2", None, t0 + timedelta(minutes=1)) is None
    # The holder is gone: taken over, with the next attempt number.
    second = do_claim("w:2", False, t0 + timedelta(minutes=1))
    assert (second.attempt, second.taken_over) == (2, True)
    # Unknown holder past the lease: taken over too.
    third = do_claim("w:3", None, t0 + timedelta(hours=1))
    assert (third.attempt, third.worker) == (3, "w:3")
    from engine.claims import finish

    with h.db.transaction() as s:
        assert not finish(s, Step, sid, StepState.COMPLETED, attempt=2, values={"reason": "old"})
        assert finish(s, Step, sid, StepState.COMPLETED, attempt=3, values={})
    with h.db.transaction() as s:
        assert not finish(s, Step, sid, StepState.ERROR, attempt=3, values={})
    row = h.steps(run_id)["start"]
    assert (row.state, row.attempt, row.worker, row.reason) == ("completed", 3, "w:3", None)
    assert do_claim("w:4", False) is None  # terminal rows are never claimed
    with h.db.transaction() as s:
        assert (
            claim(s, Step, "0" * 24, worker="w", holder_alive=lambda _: None, lease=lease) is None
        )
