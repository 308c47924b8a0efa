"""Block executions: re-run one block of a past run against the current draft.

The source run and its steps are only read. The execution copies the chosen step's
inputs and freezes the draft block's config into its own row, so it is reproducible
whatever happens to the draft afterwards.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from engine import handoff
from engine.blocks.base import CONSENSUS_SIZES, n_consensus_of
from engine.blocks.registry import kind_of
from engine.clock import utcnow
from engine.db.models import BlockExecution
from engine.errors import Conflict, FieldError, Invalid, NotFound
from engine.graph.model import Block, Graph
from engine.ids import new_id
from engine.lifecycle import STEP, StepState, transition
from engine.pages import Page, PageRequest, paginate
from engine.ports import Work, WorkKind
from engine.rerun import RanStep, drift, inputs_from_upstream, load_source, ran_steps


def get_execution(s: Session, org_id: str, execution_id: str) -> BlockExecution:
    ex = s.get(BlockExecution, execution_id)
    if ex is None or ex.organization_id != org_id:
        raise NotFound(f"block execution {execution_id} not found")
    return ex


# On the table, not the mapped class: executed with a dict, the class would take the ORM's
# bulk path, all bookkeeping for one row.
_INSERT = insert(cast(Table, BlockExecution.__table__))


def create_execution(
    s: Session,
    org_id: str,
    *,
    run_id: str,
    block_id: str,
    step_id: str | None = None,
    n_consensus: int | None = None,
    check_eligibility: bool = True,
) -> tuple[BlockExecution, list[Work]]:
    """Insert the execution ``pending`` (one INSERT, nothing read back).

    The returned row is what was stored, not attached to ``s``: the caller answers with
    it instead of reading it again.
    """
    src = load_source(s, org_id, run_id, block_id=block_id, step_id=step_id)
    block = _runnable_block(src.draft, src.workflow_id, block_id)
    config = _config_with(block, n_consensus)
    if check_eligibility:
        found = drift(src, block_id)
        if found["blocks"] or found["edges"]:
            raise Conflict(
                "the draft differs upstream of this block from the run's config; "
                "send check_eligibility: false to run anyway",
                extra={"drift": {k: list(v) for k, v in found.items()}},
            )
    steps = (
        list(src.ran)
        if src.ran is not None
        else ran_steps(s, src.run_id, block_id, step_id, lineage=src.lineage)
    )
    available = [st.as_iteration() for st in steps]
    chosen = _chosen_step(steps, available, run_id, block_id, step_id)
    inputs = (
        dict(chosen.inputs or {})
        if chosen
        else inputs_from_upstream(s, run_id, src.draft, block_id, lineage=src.lineage)
    )
    values: dict[str, Any] = {
        "id": new_id(),
        "organization_id": org_id,
        "workflow_id": src.workflow_id,
        "run_id": run_id,
        "block_id": block_id,
        "block_type": block.type,
        "workflow_version": src.version,
        "step_id": chosen.step_id if chosen else None,
        "available_iterations": available if len(available) > 1 else None,
        "block_config": config,
        "inputs": inputs,
        "n_consensus": n_consensus_of(config),
        "state": StepState.PENDING,
        "attempt": 0,
        "open_children": 0,
        "created_at": utcnow(),
    }
    # Plain statements on the session's connection throughout: the ORM's unit of work and
    # result processing would only add bookkeeping to a few columns and one row.
    s.connection().execute(_INSERT, values)
    return BlockExecution(**values), [Work(kind=WorkKind.EXECUTION, id=values["id"])]


def _runnable_block(draft: Graph, workflow_id: str, block_id: str) -> Block:
    block = draft.by_id.get(block_id)
    if block is None:
        raise NotFound(f"block {block_id} is not in the current draft of workflow {workflow_id}")
    if not kind_of(block.type).rerunnable:
        raise Invalid(
            f"a {block.type} block cannot be executed on its own",
            errors=[
                FieldError(
                    loc=("body", "block_id"), msg=f"{block.type} blocks run only inside a run"
                )
            ],
        )
    return block


def _config_with(block: Block, n_consensus: int | None) -> dict[str, Any]:
    """The block's config, with the request's ``n_consensus`` (a model block's only)."""
    config = dict(block.config)
    if n_consensus is None:
        return config
    if not kind_of(block.type).calls_model:
        raise Invalid(
            "n_consensus applies only to extract, split and classifier blocks",
            errors=[
                FieldError(loc=("body", "n_consensus"), msg=f"not allowed for a {block.type} block")
            ],
        )
    if isinstance(n_consensus, bool) or n_consensus not in CONSENSUS_SIZES[1:]:
        raise Invalid(
            "n_consensus must be 3, 5 or 7",
            errors=[FieldError(loc=("body", "n_consensus"), msg="must be 3, 5 or 7")],
        )
    config["n_consensus"] = n_consensus
    return config


def _chosen_step(
    steps: list[RanStep],
    available: list[Any],
    run_id: str,
    block_id: str,
    step_id: str | None,
) -> RanStep | None:
    """The step whose inputs the execution re-uses: the one named, or the only one."""
    if step_id is not None:
        chosen = next((st for st in steps if st.step_id == step_id), None)
        if chosen is None:
            raise Invalid(
                f"{step_id!r} is not a step of block {block_id} in run {run_id}",
                errors=[
                    FieldError(loc=("body", "step_id"), msg="not a step of this block in this run")
                ],
                extra={"available_iterations": available},
            )
        return chosen
    if len(steps) > 1:
        raise Invalid(
            f"block {block_id} ran {len(steps)} times in this run; choose one with step_id",
            errors=[
                FieldError(loc=("body", "step_id"), msg="required: the block ran several times")
            ],
            extra={"available_iterations": available},
        )
    return steps[0] if steps else None


def mark_queued(s: Session, ex: BlockExecution) -> bool:
    """After a successful publish: pending -> queued, on the row and on ``ex``.

    False when the row had already moved on (a worker claimed it first: its claim goes
    pending -> queued -> running itself).
    """
    now = utcnow()
    if not handoff.mark_queued(s, BlockExecution, [ex.id], now=now):
        return False
    # ``ex`` was built by create_execution, never loaded: give it what the move wrote.
    ex.state, ex.queued_at = StepState.QUEUED, now
    return True


def list_executions(
    s: Session,
    org_id: str,
    page: PageRequest,
    *,
    run_id: str | None = None,
    block_id: str | None = None,
    workflow_id: str | None = None,
) -> Page[BlockExecution]:
    stmt = select(BlockExecution).where(BlockExecution.organization_id == org_id)
    if workflow_id:
        stmt = stmt.where(BlockExecution.workflow_id == workflow_id)
    if run_id:
        stmt = stmt.where(BlockExecution.run_id == run_id)
    if block_id:
        stmt = stmt.where(BlockExecution.block_id == block_id)
    return paginate(s, stmt, BlockExecution, page)


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
