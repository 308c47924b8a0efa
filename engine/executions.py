"""Block executions: re-run one block of a past run against the current draft.

The source run and its steps are only read. The execution copies the chosen step's
inputs and freezes the draft block's config into its own row, so it is reproducible
whatever happens to the draft afterwards.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.blocks import CONSENSUS_SIZES, MODEL_TYPES, n_consensus_of
from engine.clock import utcnow
from engine.db.models import BlockExecution, Step, Workflow
from engine.errors import Conflict, FieldError, Invalid, NotFound
from engine.graph import Graph, parse_graph, upstream_drift
from engine.lifecycle import STEP, StepState, transition
from engine.pages import Page, paginate
from engine.ports import Work, WorkKind
from engine.runs import get_run

RERUNNABLE = frozenset({"function", "extract", "classifier", "split", "router", "end", "start"})
_NUMBERS = re.compile(r"(\d+)")
RAN = (StepState.COMPLETED, StepState.ERROR, StepState.RUNNING, StepState.CANCELLED)


def get_execution(s: Session, org_id: str, execution_id: str) -> BlockExecution:
    ex = s.get(BlockExecution, execution_id)
    if ex is None or ex.organization_id != org_id:
        raise NotFound(f"block execution {execution_id} not found")
    return ex


def create_execution(
    s: Session,
    org_id: str,
    *,
    run_id: str,
    block_id: str,
    step_id: str | None = None,
    n_consensus: int | None = None,
    verify_upstream: bool = True,
) -> tuple[BlockExecution, list[Work]]:
    run = get_run(s, org_id, run_id)
    wf = s.get(Workflow, run.workflow_id)
    if wf is None or wf.organization_id != org_id:
        raise NotFound(f"run {run_id} not found")
    draft = parse_graph(wf.draft, max_blocks=10_000)
    block = draft.by_id.get(block_id)
    if block is None:
        raise NotFound(f"block {block_id} is not in the current draft of workflow {wf.id}")
    if block.type not in RERUNNABLE:
        raise Invalid(
            f"a {block.type} block cannot be executed on its own",
            errors=[
                FieldError(
                    loc=("body", "block_id"), msg=f"{block.type} blocks run only inside a run"
                )
            ],
        )
    config = dict(block.config)
    if n_consensus is not None:
        if block.type not in MODEL_TYPES:
            raise Invalid(
                "n_consensus applies only to extract, split and classifier blocks",
                errors=[
                    FieldError(
                        loc=("body", "n_consensus"), msg=f"not allowed for a {block.type} block"
                    )
                ],
            )
        if isinstance(n_consensus, bool) or n_consensus not in CONSENSUS_SIZES[1:]:
            raise Invalid(
                "n_consensus must be 3, 5 or 7",
                errors=[FieldError(loc=("body", "n_consensus"), msg="must be 3, 5 or 7")],
            )
        config["n_consensus"] = n_consensus
    run_graph = parse_graph(run.config, max_blocks=10_000)
    if verify_upstream:
        drift = upstream_drift(run_graph, draft, block_id)
        if block_id not in run_graph.by_id:
            # A block new in the draft: its incoming edges are new by definition and are
            # exactly what its inputs are assembled along; only what lies above them drifts.
            into = {e.label() for e in draft.incoming(block_id)}
            drift["edges"] = [e for e in drift["edges"] if e not in into]
        if drift["blocks"] or drift["edges"]:
            raise Conflict(
                "the draft differs upstream of this block from the run's config; "
                "send verify_upstream: false to run anyway",
                extra={"drift": drift},
            )
    steps = sorted(
        s.scalars(
            select(Step).where(
                Step.run_id == run.id, Step.block_id == block_id, Step.state.in_(RAN)
            )
        ),
        key=lambda st: (st.turn_index, _natural(st.step_id)),
    )
    available = [st.step_id for st in steps]
    chosen: Step | None = None
    if step_id is not None:
        chosen = next((st for st in steps if st.step_id == step_id), None)
        if chosen is None:
            raise Invalid(
                f"{step_id!r} is not a step of block {block_id} in run {run.id}",
                errors=[
                    FieldError(loc=("body", "step_id"), msg="not a step of this block in this run")
                ],
                extra={"available_iterations": available},
            )
    elif len(steps) > 1:
        raise Invalid(
            f"block {block_id} ran {len(steps)} times in this run; choose one with step_id",
            errors=[
                FieldError(loc=("body", "step_id"), msg="required: the block ran several times")
            ],
            extra={"available_iterations": available},
        )
    elif steps:
        chosen = steps[0]
    inputs = (
        dict(chosen.inputs or {}) if chosen else _inputs_from_upstream(s, run.id, draft, block_id)
    )
    ex = BlockExecution(
        organization_id=org_id,
        workflow_id=wf.id,
        run_id=run.id,
        block_id=block_id,
        block_type=block.type,
        workflow_version=run.version,
        step_id=chosen.step_id if chosen else None,
        available_iterations=available if len(available) > 1 else None,
        block_config=config,
        inputs=inputs,
        n_consensus=n_consensus_of(config),
        state=StepState.PENDING,
    )
    s.add(ex)
    s.flush()
    return ex, [Work(kind=WorkKind.EXECUTION, id=ex.id)]


def _natural(step_id: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a step id by its numbers: pages[2] before pages[10], x~2 before x~10."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in _NUMBERS.split(step_id) if part
    )


def _inputs_from_upstream(s: Session, run_id: str, draft: Graph, block_id: str) -> dict[str, Any]:
    """A block new in the draft: its inputs are the run's outputs along the draft's edges."""
    incoming = draft.incoming(block_id)
    sources = {e.source for e in incoming}
    latest: dict[str, Step] = {}
    for st in s.scalars(
        select(Step)
        .where(
            Step.run_id == run_id,
            Step.block_id.in_(sources),
            Step.state == StepState.COMPLETED,
            Step.scope == "",
        )
        .order_by(Step.turn_index, Step.visit)
    ):
        latest[st.block_id] = st
    inputs: dict[str, Any] = {}
    missing: list[FieldError] = []
    for e in incoming:
        src = latest.get(e.source)
        outputs = (src.outputs or {}) if src else {}
        if src is None or e.source_handle not in outputs:
            missing.append(
                FieldError(
                    loc=("body", "block_id"),
                    msg=f"no output {e.source}.{e.source_handle} in the run"
                    f" for input {e.target_handle!r}",
                )
            )
        else:
            inputs.setdefault(e.target_handle, outputs[e.source_handle])
    if missing or not incoming:
        raise Invalid(
            f"block {block_id} did not run in this run and its inputs cannot be assembled "
            "from the run's outputs",
            errors=missing
            or [FieldError(loc=("body", "block_id"), msg="the block has no incoming edges")],
        )
    return inputs


def list_executions(
    s: Session,
    org_id: str,
    *,
    limit: int,
    after: str | None,
    run_id: str | None = None,
    block_id: str | None = None,
) -> Page[BlockExecution]:
    stmt = select(BlockExecution).where(BlockExecution.organization_id == org_id)
    if run_id:
        stmt = stmt.where(BlockExecution.run_id == run_id)
    if block_id:
        stmt = stmt.where(BlockExecution.block_id == block_id)
    return paginate(s, stmt, BlockExecution, limit=limit, after=after)


def cancel_execution(
    s: Session, org_id: str, execution_id: str
) -> tuple[BlockExecution, list[Work]]:
    ex = get_execution(s, org_id, execution_id)
    if STEP.is_terminal(ex.state):
        raise Conflict(f"the block execution is already {ex.state}")
    was_running = ex.state == StepState.RUNNING
    moved = transition(
        s,
        STEP,
        BlockExecution,
        ex.id,
        StepState.CANCELLED,
        values={"reason": "cancelled_by_user", "completed_at": utcnow()},
    )
    if not moved:
        s.refresh(ex)
        raise Conflict(f"the block execution is already {ex.state}")
    s.refresh(ex)
    return ex, [Work(kind=WorkKind.EXECUTION, id=ex.id)] if was_running else []
