"""A consensus sample message: one model call of a consensus block, settled under its owner.

The owner (a step or a block execution) fanned ``n`` samples out (engine.worker.fanout);
the last sample to settle reconciles their answers and settles the owner, in the same
transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.answers import none_valid
from engine.blocks.registry import model_kind
from engine.claims import finish
from engine.clock import utcnow
from engine.db.models import BlockExecution, ConsensusSample, Run, Step
from engine.db.session import lock_row
from engine.execute import BlockFailed, call_model, reconcile_answers
from engine.lifecycle import StepState
from engine.limits import measured
from engine.observe import observe_block_run, observe_sample
from engine.ports import WorkKind
from engine.providers.base import ModelResponse
from engine.refusals import settle_screened
from engine.settings import Settings
from engine.worker.calls import record_calls
from engine.worker.claim import claim_row
from engine.worker.context import Job, Message, Result, Settled, execution_job, step_job
from engine.worker.executions import settle_execution_in
from engine.worker.steps import settle_step_in


def run_sample(msg: Message, sample_id: str) -> None:
    now = utcnow()
    # Each write here is one statement: no BEGIN/COMMIT round trips (Database.autocommit).
    with msg.db.autocommit(durable=False) as s:
        owner = None
        c = claim_row(msg, s, ConsensusSample, sample_id, now)
        if c is not None:
            owner = owner_job(msg, s, c.row)
            if owner is None:
                finish(
                    s,
                    ConsensusSample,
                    sample_id,
                    StepState.CANCELLED,
                    attempt=c.attempt,
                    values={"reason": "owner_ended"},
                )
        s.commit()
    if c is None or owner is None:
        return
    kind = model_kind(owner.block.type)
    request = kind.request(owner.block, owner.inputs, sample_index=int(c.row.index))
    response: ModelResponse | BlockFailed
    try:
        response = call_model(msg.tools.provider, request)
    except BlockFailed as failure:
        response = failure
    observe_sample(msg.metrics, owner, response)
    attempt = c.attempt
    settle_screened(
        lambda result: settle_sample(msg, sample_id, attempt, owner, result),
        response,
        row=sample_id,
    )


def owner_job(msg: Message, s: Session, sample: ConsensusSample) -> Job | None:
    """The step or execution that fanned ``sample`` out, if that claim still runs."""
    if sample.owner_kind == WorkKind.STEP:
        step = s.get(Step, sample.owner_id)
        if step is None or step.state != StepState.RUNNING or step.attempt != sample.owner_attempt:
            return None
        run = s.get(Run, step.run_id)
        assert run is not None
        block = msg.graphs.graph(run).by_id[step.block_id]
        return step_job(step, run, block, n_consensus=step.n_consensus)
    ex = s.get(BlockExecution, sample.owner_id)
    if ex is None or ex.state != StepState.RUNNING or ex.attempt != sample.owner_attempt:
        return None
    return execution_job(ex)


def settle_sample(
    msg: Message, sample_id: str, attempt: int, owner: Job, response: ModelResponse | BlockFailed
) -> None:
    with msg.db.transaction() as s:
        settled = _settle_sample_in(s, msg, sample_id, attempt, owner, response)
    msg.after.take(settled)


def _settle_sample_in(
    s: Session,
    msg: Message,
    sample_id: str,
    attempt: int,
    owner: Job,
    response: ModelResponse | BlockFailed,
) -> Settled:
    # Lock order is always run (or execution) first, then its children.
    if owner.kind == WorkKind.STEP:
        lock_row(s, Run, owner.run_id or "")
        owner_model: Any = Step
    else:
        owner_model = BlockExecution
    row = lock_row(s, owner_model, owner.id)
    if not _finish_sample(s, sample_id, attempt, owner, response, utcnow()):
        return Settled()
    if row is None or row.state != StepState.RUNNING or row.attempt != owner.attempt:
        return Settled()
    row.open_children = int(row.open_children) - 1
    if row.open_children > 0:
        return Settled()
    result = _reconcile(owner, _samples_of(s, owner), msg.settings)
    if owner.kind == WorkKind.STEP:
        return settle_step_in(s, msg, owner, result, claim_next=False)
    observe_block_run(msg.metrics, owner, result, utcnow())
    return settle_execution_in(s, owner, result)


def _finish_sample(
    s: Session,
    sample_id: str,
    attempt: int,
    owner: Job,
    response: ModelResponse | BlockFailed,
    now: datetime,
) -> bool:
    if isinstance(response, BlockFailed):
        values = {"error_type": response.error_type, "error_message": response.message}
        target, calls = StepState.ERROR, response.calls
    else:
        values = {"output": response.data}
        target, calls = StepState.COMPLETED, (response,)
    moved = finish(s, ConsensusSample, sample_id, target, attempt=attempt, now=now, values=values)
    if moved:
        record_calls(s, owner, calls)
    return moved


def _samples_of(s: Session, owner: Job) -> list[ConsensusSample]:
    return list(
        s.scalars(
            select(ConsensusSample)
            .where(
                ConsensusSample.owner_kind == str(owner.kind),
                ConsensusSample.owner_id == owner.id,
                ConsensusSample.owner_attempt == owner.attempt,
            )
            .order_by(ConsensusSample.index)
        ).all()
    )


def _reconcile(owner: Job, samples: list[ConsensusSample], settings: Settings) -> Result:
    answers = [a.output if a.state == StepState.COMPLETED else None for a in samples]
    failures = [(a.error_type, a.error_message) for a in samples]
    if all(a is None for a in answers):
        return BlockFailed(*none_valid(failures))
    try:
        kind = model_kind(owner.block.type)
        schema = kind.schema(owner.block.config)
        value, consensus = reconcile_answers(owner.block, answers, failures, schema=schema)
        outcome = kind.outcome(owner.block, owner.inputs, value, consensus=consensus)
        return measured(outcome, owner.inputs, settings)
    except BlockFailed as failure:
        return failure
