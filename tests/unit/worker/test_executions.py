"""engine.worker.executions: a block run alone, outside any run."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from engine.db.models import (
    BlockExecution,
    ModelCall,
)
from engine.execute import unwrap
from engine.ports import Work, WorkKind
from tests.support.harness import (
    Harness,
    linear_graph,
)


def test_block_execution_runs_alone(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 2})
    h.drain()
    h.provider.answers = [{"v": 1}, {"v": 1}, {"v": 2}]
    with h.db.transaction() as s:
        plain = BlockExecution(
            organization_id=h.org_id,
            workflow_id=wf,
            run_id=run_id,
            block_id="f",
            block_type="function",
            block_config={"function": "double"},
            inputs={"value": {"type": "json", "data": 7}},
            state="queued",
        )
        voted = BlockExecution(
            organization_id=h.org_id,
            workflow_id=wf,
            run_id=run_id,
            block_id="ex",
            block_type="extract",
            block_config={"schema": {"type": "object"}},
            inputs={"document": {"type": "json", "data": "d"}},
            state="queued",
            n_consensus=3,
        )
        s.add_all([plain, voted])
        s.flush()
        ids = (plain.id, voted.id)
    h.dispatcher.dispatch([Work(kind=WorkKind.EXECUTION, id=i) for i in ids])
    h.drain("lifo")
    with h.db.sessions() as s:
        p = s.get(BlockExecution, ids[0])
        v = s.get(BlockExecution, ids[1])
        assert p is not None and v is not None
        assert (p.state, p.outputs) == ("completed", {"output": {"type": "json", "data": 14}})
        assert v.state == "completed"
        assert unwrap(v.outputs) == {"output": {"v": 1}}
        assert v.consensus is not None and v.consensus["likelihoods"] == {"v": pytest.approx(2 / 3)}
        calls = s.scalars(select(ModelCall).where(ModelCall.execution_id == v.id)).all()
        assert len(calls) == 3 and all(c.run_id is None for c in calls)
    # The source run is untouched.
    assert h.run(run_id).steps_total == 3
