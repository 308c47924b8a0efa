"""engine.worker.samples and fanout: consensus samples fanned out and reconciled."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select, update

from engine.db.models import (
    ConsensusSample,
    ModelCall,
    Step,
)
from engine.execute import unwrap
from engine.providers.base import ProviderError
from engine.worker.context import FanOutConsensus
from engine.worker.steps import claim_step, settle_step
from tests.support.harness import (
    Harness,
    block,
    edge,
    start_block,
)


@pytest.mark.parametrize("order", ["fifo", "lifo"])
def test_consensus_of_five_disagreeing_answers(h: Harness, order: str) -> None:
    h.provider.answers = [
        {"total": 10, "vendor": "ACME"},
        {"total": 99, "vendor": "ACME"},
        {"total": 10, "vendor": "ACME"},
        {"total": 99, "vendor": "ACME"},
        {"total": 10, "vendor": "ACME"},
    ]
    schema = {
        "type": "object",
        "properties": {"total": {"type": "number"}, "vendor": {"type": "string"}},
    }
    blocks = [
        start_block("doc"),
        block("ex", "extract", schema=schema, n_consensus=5, instructions="read it"),
        block("end", "end"),
    ]
    edges = [edge("start", "doc", "ex", "document"), edge("ex", "output", "end", "data")]
    wf = h.workflow(blocks, edges)
    run_id = h.start(wf, {"doc": "invoice text"})
    h.drain(order)
    run = h.assert_settled(run_id)
    assert run.status == "completed"
    ex = h.steps(run_id)["ex"]
    assert ex.state == "completed"
    assert ex.n_consensus == 5
    assert ex.consensus is not None
    assert ex.consensus["likelihoods"] == {"total": pytest.approx(0.6), "vendor": 1.0}
    assert ex.consensus["attempts"] == 5
    assert ex.consensus["succeeded"] == 5
    value = unwrap(ex.outputs)["output"]
    assert value == {"total": pytest.approx(10), "vendor": "ACME"}
    assert h.output(run_id) == {"data": value}
    assert sorted(r.sample_index for r in h.provider.requests) == [0, 1, 2, 3, 4]
    assert all(r.document == "invoice text" for r in h.provider.requests)
    with h.db.sessions() as s:
        calls = s.scalars(select(ModelCall).where(ModelCall.run_id == run_id)).all()
        attempts = s.scalars(select(ConsensusSample).where(ConsensusSample.owner_id == ex.id)).all()
    assert len(calls) == 5
    assert {c.step_id for c in calls} == {ex.id}
    assert sum(c.prompt_tokens for c in calls) == 50
    assert sorted(a.index for a in attempts) == [0, 1, 2, 3, 4]
    assert all(a.state == "completed" for a in attempts)
    assert run.steps_total == run.steps_done == 3


def test_consensus_with_failed_attempts(h: Harness) -> None:
    err = ProviderError("provider_timeout", "slow", retryable=True)
    h.provider.answers = [{"category": "a"}, err, {"category": "b"}, {"category": "a"}, err]
    blocks = [
        start_block("doc"),
        block("cls", "classifier", categories=["a", "b"], n_consensus=5),
        block("end", "end"),
    ]
    edges = [
        edge("start", "doc", "cls", "document"),
        edge("cls", "a", "end", "a"),
        edge("cls", "b", "end", "b"),
    ]
    wf = h.workflow(blocks, edges)
    run_id = h.start(wf, {"doc": "x"})
    h.drain()
    h.assert_settled(run_id)
    cls = h.steps(run_id)["cls"]
    assert cls.active_output_handles == ["a"]
    assert cls.consensus is not None
    assert cls.consensus["succeeded"] == 3
    assert h.output(run_id) == {"a": "x"}
    with h.db.sessions() as s:
        states = Counter(
            s.scalars(select(ConsensusSample.state).where(ConsensusSample.owner_id == cls.id)).all()
        )
        n_calls = len(s.scalars(select(ModelCall.id).where(ModelCall.run_id == run_id)).all())
    assert states == {"completed": 3, "error": 2}
    assert n_calls == 3


def test_consensus_where_every_attempt_fails_fails_the_run(h: Harness) -> None:
    err = ProviderError("provider_unavailable", "down", retryable=False)
    h.provider.answers = [err, err, err]
    blocks = [
        start_block("doc"),
        block("ex", "extract", schema={"type": "object"}, n_consensus=3),
        block("end", "end"),
    ]
    edges = [edge("start", "doc", "ex", "document"), edge("ex", "output", "end", "x")]
    run_id = h.start(h.workflow(blocks, edges), {"doc": "x"})
    h.drain()
    run = h.assert_settled(run_id)
    assert run.status == "failed"
    assert run.termination_reason == "execution_error"
    assert h.steps(run_id)["ex"].error_type == "consensus_failed"


def test_a_stale_consensus_fan_out_creates_no_attempts(h: Harness) -> None:
    blocks = [
        start_block("doc"),
        block("ex", "extract", schema={"type": "object"}, n_consensus=3),
        block("end", "end"),
    ]
    edges = [edge("start", "doc", "ex", "document"), edge("ex", "output", "end", "x")]
    run_id = h.start(h.workflow(blocks, edges), {"doc": "d"})
    h.deliver(h.dispatcher.queue.pop(0))  # start
    ex_id = h.steps(run_id)["ex"].id
    job = claim_step(h.orch.message(), ex_id)
    assert job is not None
    with h.db.transaction() as s:
        s.execute(update(Step).where(Step.id == ex_id).values(attempt=job.attempt + 1))
    settle_step(h.orch.message(), job, FanOutConsensus(n=3), claim_next=False)
    with h.db.sessions() as s:
        assert s.scalars(select(ConsensusSample.id)).all() == []
    ex = h.steps(run_id)["ex"]
    assert (ex.open_children, ex.n_consensus) == (0, 1)
