"""What re-running a block reads: its run, the current draft, the drift between them, and
the steps of the block in the run (or, for a block new in the draft, its upstream outputs).

Reads only. Parsed graphs and drift checks are kept in memory, keyed by what changes
whenever they would, so that a repeated re-run pays for the rows it reads and no more.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, func, select, type_coerce
from sqlalchemy.orm import Session

from engine.db.models import Run, Step, Workflow
from engine.errors import FieldError, Invalid, NotFound
from engine.graph import cache as graph_cache
from engine.graph.drift import upstream_drift
from engine.graph.model import Graph
from engine.graph.parse import parse_graph
from engine.lifecycle import StepState
from engine.lineage import Lineage, sees
from engine.memo import Memo

_NUMBERS = re.compile(r"(\d+)")
RAN = (StepState.COMPLETED, StepState.ERROR, StepState.RUNNING, StepState.CANCELLED)


@dataclass(frozen=True, kw_only=True)
class RanStep:
    step_id: str
    # The for_each iteration the step ran in (``pages[2]``), "" outside any.
    scope: str
    turn_index: int
    inputs: dict[str, Any] | None

    def as_iteration(self) -> dict[str, Any]:
        """How a block execution lists it: ``{"step_id", "iteration"}``."""
        return {"step_id": self.step_id, "iteration": self.scope or None}


@dataclass(frozen=True, kw_only=True)
class Source:
    """What an execution needs of its run and of the run's workflow."""

    run_id: str
    version: int | None
    workflow_id: str
    workflow_updated_at: datetime
    run_graph: Graph
    draft: Graph
    # The ancestors whose earlier steps a checkpoint run reads (engine.lineage).
    lineage: Lineage = ()
    # The block's ran steps when they came with the run (see load_source), else None.
    ran: tuple[RanStep, ...] | None = None


# Parsing a graph and fingerprinting its blocks costs more than reading it: keep the
# results, keyed by what changes whenever the graph does. A run's config never changes
# after the run is created; any change of a draft moves its workflow's ``updated_at``.
# Sized for the runs being worked on at a time: a graph may hold hundreds of blocks.
_RUN_GRAPHS: Memo[str, Graph] = Memo(128)
_DRAFTS: Memo[tuple[str, datetime], Graph] = Memo(64)
# The latest draft parsed per workflow: a request whose workflow still has that
# ``updated_at`` is not sent the draft's JSON again (the statement answers NULL for it).
_LATEST_DRAFT: dict[str, tuple[datetime, Graph]] = {}
_LATEST_LOCK = threading.Lock()
# A run's workflow and lineage never change: knowing them says which draft the run's
# request may skip, and whether its steps can be read along with it.
_KNOWN_RUNS: Memo[str, tuple[str, Lineage]] = Memo(1024)
_DRIFTS: Memo[tuple[str, str, datetime, str], dict[str, list[str]]] = Memo(1024)


def _parse(data: dict[str, Any]) -> Graph:
    return parse_graph(data, max_blocks=10_000)


def _source_statement(with_config: bool) -> Any:
    columns: list[Any] = [
        Run.organization_id,
        Run.version,
        Run.workflow_id,
        Run.lineage,
        Workflow.organization_id.label("workflow_org"),
        Workflow.updated_at,
        # The draft only when it is not the one this process parsed last.
        type_coerce(
            case(
                (
                    Workflow.updated_at == bindparam("known_at", type_=Workflow.updated_at.type),
                    None,
                ),
                else_=Workflow.draft,
            ),
            Workflow.draft.type,
        ).label("draft"),
    ]
    if with_config:
        columns.append(Run.config)
    return (
        select(*columns)
        .join(Workflow, Workflow.id == Run.workflow_id)
        .where(Run.id == bindparam("run_id"))
    )


def _source_with_steps_statement(by_id: bool) -> Any:
    """A known run's repeated request: the run, its workflow and the block's ran steps in
    one round trip, one row per step (one row with no step when none ran).

    The draft rides on the first row only, and only when it is not the one parsed last.
    """
    known_at = bindparam("known_at", type_=Workflow.updated_at.type)
    draft = case(
        (Workflow.updated_at == known_at, None),
        (func.row_number().over() == 1, Workflow.draft),
        else_=None,
    )
    usable = Step.step_id == bindparam("step_id") if by_id else func.count(Step.id).over() == 1
    return (
        select(
            Run.organization_id,
            Run.version,
            Run.workflow_id,
            Run.lineage,
            Workflow.organization_id.label("workflow_org"),
            Workflow.updated_at,
            type_coerce(draft, Workflow.draft.type).label("draft"),
            Step.step_id,
            Step.scope,
            Step.turn_index,
            case((usable, Step.inputs)).label("inputs"),
        )
        .join(Workflow, Workflow.id == Run.workflow_id)
        .outerjoin(
            Step,
            and_(
                Step.run_id == Run.id,
                Step.block_id == bindparam("block_id"),
                Step.state.in_(RAN),
            ),
        )
        .where(Run.id == bindparam("run_id"))
    )


# Built once: SQLAlchemy then reuses their compiled form without walking them again.
_SOURCE = {with_config: _source_statement(with_config) for with_config in (True, False)}
_SOURCE_WITH_STEPS = {by_id: _source_with_steps_statement(by_id) for by_id in (True, False)}


def _ran_steps_statement(by_id: bool, run_rows: Any) -> Any:
    return select(
        Step.step_id,
        Step.scope,
        Step.turn_index,
        case(
            (
                Step.step_id == bindparam("step_id")
                if by_id
                # Without a step id only a block that ran once has usable inputs.
                else func.count().over() == 1,
                Step.inputs,
            )
        ).label("inputs"),
    ).where(
        run_rows,
        Step.block_id == bindparam("block_id"),
        Step.state.in_(RAN),
    )


_RAN_STEPS = {
    by_id: _ran_steps_statement(by_id, Step.run_id == bindparam("run_id"))
    for by_id in (True, False)
}


def load_source(
    s: Session,
    org_id: str,
    run_id: str,
    *,
    block_id: str | None = None,
    step_id: str | None = None,
) -> Source:
    """The run and its workflow in one statement; the run's config and the workflow's
    draft only when this process has not parsed them already.

    With ``block_id``, a run this process has read before (and that is not a checkpoint
    run) comes with the block's ran steps in the same statement (``Source.ran``): a
    repeated POST makes one round trip for its reads. The tenant check runs on every call:
    the row read says whose run and workflow these are.
    """
    run_graph = _RUN_GRAPHS.peek(run_id)
    known = _KNOWN_RUNS.peek(run_id)
    latest = _LATEST_DRAFT.get(known[0]) if known is not None else None
    params: dict[str, Any] = {"run_id": run_id, "known_at": latest[0] if latest else None}
    along = block_id is not None and run_graph is not None and known is not None and not known[1]
    if along:
        params.update(block_id=block_id, step_id=step_id)
        rows = s.connection().execute(_SOURCE_WITH_STEPS[step_id is not None], params).all()
    else:
        rows = s.connection().execute(_SOURCE[run_graph is None], params).all()
    row = rows[0] if rows else None
    if row is None or row.organization_id != org_id or row.workflow_org != org_id:
        raise NotFound(f"run {run_id} not found")
    if run_graph is None:
        run_graph = _RUN_GRAPHS.get(run_id, lambda: graph_cache.run_graph(row.config))
    lineage: Lineage = tuple((str(a), int(below)) for a, below in (row.lineage or ()))
    _KNOWN_RUNS.get(run_id, lambda: (str(row.workflow_id), lineage))
    return Source(
        run_id=run_id,
        version=row.version,
        workflow_id=row.workflow_id,
        workflow_updated_at=row.updated_at,
        run_graph=run_graph,
        # The row that carries the draft, if one does (row_number() and the row order
        # need not agree).
        draft=_draft_of(next((r for r in rows if r.draft is not None), row), latest),
        lineage=lineage,
        ran=tuple(_ran_of([r for r in rows if r.step_id is not None])) if along else None,
    )


def _draft_of(row: Any, latest: tuple[datetime, Graph] | None) -> Graph:
    updated_at: datetime = row.updated_at
    if row.draft is None and latest is not None and latest[0] == updated_at:
        return latest[1]
    draft = _DRAFTS.get((row.workflow_id, updated_at), lambda: _parse(row.draft))
    with _LATEST_LOCK:
        known = _LATEST_DRAFT.get(row.workflow_id)
        if known is None or known[0] < updated_at:
            if len(_LATEST_DRAFT) >= 64 and known is None:
                _LATEST_DRAFT.clear()  # rare: more workflows at once than worth keeping
            _LATEST_DRAFT[row.workflow_id] = (updated_at, draft)
    return draft


def drift(src: Source, block_id: str) -> dict[str, list[str]]:
    """Blocks and edges upstream of the block that differ between the run and the draft.

    Shared between requests: read it, never change it.
    """
    key = (src.run_id, src.workflow_id, src.workflow_updated_at, block_id)
    return _DRIFTS.get(key, lambda: _drift(src, block_id))


def _drift(src: Source, block_id: str) -> dict[str, list[str]]:
    drift = upstream_drift(src.run_graph, src.draft, block_id)
    if block_id not in src.run_graph.by_id:
        # A block new in the draft: its incoming edges are new by definition and are
        # exactly what its inputs are assembled along; only what lies above them drifts.
        into = {e.label() for e in src.draft.incoming(block_id)}
        drift["edges"] = [e for e in drift["edges"] if e not in into]
    return drift


def ran_steps(
    s: Session, run_id: str, block_id: str, step_id: str | None, *, lineage: Lineage = ()
) -> list[RanStep]:
    """The steps of the block that ran, in order; inputs only of the one that can be used.

    A block that ran 10,000 times in a for_each would otherwise ship 10,000 inputs to
    build an answer that names one step, or none (the 422 asking to choose).
    """
    params = {"run_id": run_id, "block_id": block_id, "step_id": step_id}
    stmt = _RAN_STEPS[step_id is not None]
    if lineage:  # a checkpoint run: the steps it inherits count as its own
        stmt = _ran_steps_statement(step_id is not None, sees(Step, bindparam("run_id"), lineage))
    return _ran_of(s.connection().execute(stmt, params).all())


def _ran_of(rows: Any) -> list[RanStep]:
    steps = [
        RanStep(step_id=r.step_id, scope=r.scope, turn_index=r.turn_index, inputs=r.inputs)
        for r in rows
    ]
    return sorted(steps, key=lambda st: (st.turn_index, _natural(st.step_id)))


def _natural(step_id: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a step id by its numbers: pages[2] before pages[10], x~2 before x~10."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in _NUMBERS.split(step_id) if part
    )


def inputs_from_upstream(
    s: Session, run_id: str, draft: Graph, block_id: str, *, lineage: Lineage = ()
) -> dict[str, Any]:
    """A block new in the draft: its inputs are the run's outputs along the draft's edges."""
    incoming = draft.incoming(block_id)
    sources = {e.source for e in incoming}
    latest: dict[str, Step] = {}
    for st in s.scalars(
        select(Step)
        .where(
            sees(Step, run_id, lineage),
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
