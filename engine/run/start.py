"""Starting a run: its row, its first turn and its start steps (queued after commit)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from engine.clock import utcnow
from engine.db.models import Run, Step, Turn
from engine.errors import FieldError, Invalid
from engine.events import record_run, record_step_rows
from engine.execute import wrap
from engine.graph.cache import run_graph
from engine.graph.model import Graph
from engine.ids import new_id
from engine.lifecycle import RunStatus, StepState
from engine.ports import Work, WorkKind
from engine.run.paths import step_path
from engine.workflows import get_workflow, resolve_graph


@dataclass(frozen=True, kw_only=True)
class Started:
    run: Run
    work: list[Work]


def check_inputs(
    graph: Graph, inputs: Any, *, loc: tuple[str | int, ...] = ("body", "inputs")
) -> None:
    if not isinstance(inputs, Mapping):
        raise Invalid(
            "inputs must be an object",
            errors=[FieldError(loc=loc, msg="an object keyed by the start block's handles")],
        )
    declared: dict[str, str] = {}
    for start in graph.start_blocks:
        for handle, spec in (start.config.get("inputs") or {}).items():
            declared[str(handle)] = str(spec.get("type", "json"))
    errors = [
        FieldError(loc=(*loc, k), msg="not an input of the start block")
        for k in inputs
        if k not in declared
    ]
    errors += [
        FieldError(loc=(*loc, k), msg="required input is missing")
        for k in declared
        if k not in inputs
    ]
    for k, kind in declared.items():
        value = inputs.get(k)
        if (
            k in inputs
            and kind == "file"
            and not (isinstance(value, Mapping) and isinstance(value.get("name"), str))
        ):
            errors.append(
                FieldError(loc=(*loc, k), msg="a file input is an object with at least a 'name'")
            )
    if errors:
        raise Invalid("the run's inputs do not fit the start block", errors=errors)


def start_run(
    s: Session,
    org_id: str,
    *,
    workflow_id: str,
    inputs: Any,
    version: int | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    initiator: str | None = None,
    is_evaluation: bool = False,
    original_run_id: str | None = None,
) -> Started:
    wf = get_workflow(s, org_id, workflow_id)
    number, version_name, graph_dict, settings = resolve_graph(s, wf, version)
    config = {**graph_dict, "settings": settings}
    graph = run_graph(config)
    check_inputs(graph, inputs)
    now = utcnow()
    run = Run(
        organization_id=org_id,
        workflow_id=wf.id,
        version=number,
        version_name=version_name,
        status=RunStatus.NOT_STARTED,
        config=config,
        metadata_=dict(metadata or {}),
        initiator=initiator,
        current_turn=0,
        is_evaluation=is_evaluation,
        original_run_id=original_run_id,
        steps_total=len(graph.start_blocks),
        steps_done=0,
        created_at=now,
        updated_at=now,
    )
    s.add(run)
    s.flush()
    s.add(Turn(run_id=run.id, turn_index=0, input=dict(inputs), started_at=now))
    work = start_steps(s, run, inputs, now)
    record_run(s, run)
    # The answer reads the run's turns back: the stored input must be there to read.
    s.flush()
    return Started(run=run, work=work)


def start_steps(s: Session, run: Run, inputs: Mapping[str, Any], now: datetime) -> list[Work]:
    """Create the first turn's start steps as ``pending`` (published after commit)."""
    graph = run_graph(run.config)
    rows: list[dict[str, Any]] = []
    for start in graph.start_blocks:
        kinds = {
            str(k): str(v.get("type", "json"))
            for k, v in (start.config.get("inputs") or {}).items()
        }
        rows.append(
            {
                "id": new_id(),
                "run_id": run.id,
                "turn_index": 0,
                "step_id": step_path(0, "", start.id, 1),
                "scope": "",
                "block_id": start.id,
                "block_type": start.type,
                "visit": 1,
                "state": StepState.PENDING,
                "inputs": wrap({k: inputs[k] for k in kinds}, kinds),
                "created_at": now,
                "attempt": 0,
                "n_consensus": 1,
                "open_children": 0,
            }
        )
    s.execute(insert(Step), rows)
    run.steps_total = len(rows)
    record_step_rows(s, run.id, rows)
    return [Work(kind=WorkKind.STEP, id=r["id"]) for r in rows]
