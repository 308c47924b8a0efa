"""engine.events: a transaction's events are written at commit, in their final state."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from engine.db.models import (
    Run,
    Step,
)
from tests.support.harness import (
    Harness,
    linear_graph,
)


def test_events_of_one_transaction_are_written_at_commit_in_their_final_state(
    h: Harness,
) -> None:
    from engine.db.models import RunEvent
    from engine.events import record_run, record_step_rows, record_steps

    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 1}, publish=False)
    with h.db.transaction() as s:
        run = s.get(Run, run_id)
        assert run is not None
        step = s.scalars(select(Step).where(Step.run_id == run_id)).one()
        before = s.scalar(select(func.count()).select_from(RunEvent))
        record_run(s, run)
        record_step_rows(s, run_id, [step])  # as it is now: pending (not published)
        record_steps(s, run_id, [step.id])  # as it is at commit: skipped
        s.execute(update(Step).where(Step.id == step.id).values(state="skipped"))
        run.steps_done = 1
        record_run(s, run)
        # Nothing is written before the commit.
        assert s.scalar(select(func.count()).select_from(RunEvent)) == before
    with h.db.sessions() as s:
        events = s.scalars(
            select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq)
        ).all()[-3:]
    assert [e.kind for e in events] == ["steps", "steps", "run"]
    assert events[0].data["steps"][0]["status"] == "pending"
    assert events[1].data["steps"][0]["status"] == "skipped"
    assert events[1].data["steps"][0]["block_id"] == "start"
    # Two records of the run in one transaction: one event, with the final progress.
    assert events[2].data["progress"]["steps_done"] == 1
    assert events[2].data["status"] == "not_started"


def test_events_of_a_rolled_back_transaction_are_dropped(h: Harness) -> None:
    from engine.db.models import RunEvent
    from engine.events import record_run

    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 1}, publish=False)
    with h.db.sessions() as s:
        count = s.scalar(select(func.count()).select_from(RunEvent))
    with pytest.raises(RuntimeError), h.db.transaction() as s:
        run = s.get(Run, run_id)
        assert run is not None
        record_run(s, run)
        raise RuntimeError("rolled back")
    with h.db.transaction() as s:
        pass  # a later commit on a new session writes nothing left over
    with h.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(RunEvent)) == count
