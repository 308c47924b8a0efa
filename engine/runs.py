"""Runs from the API's side: start, read, list and control."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, insert, literal, null, select, union_all
from sqlalchemy.orm import Session

from engine.clock import utcnow
from engine.db.models import Comment, Json, Run, Step, Turn
from engine.errors import Conflict, FieldError, Invalid, NotFound
from engine.events import record_run, record_step_rows
from engine.execute import wrap
from engine.graph.model import Graph
from engine.graph.parse import parse_graph
from engine.ids import new_id
from engine.lifecycle import RUN, STEP, RunStatus, StepState, TerminationReason, transition
from engine.lineage import seen_by, steps_page, turns_seen_by
from engine.listfilters import created_between, id_starts_with
from engine.pages import Page, PageRequest, paginate
from engine.ports import Work, WorkKind
from engine.scheduler import Scheduler, step_path
from engine.termination import terminate_run
from engine.workflows import get_workflow, resolve_graph


@dataclass(frozen=True, kw_only=True)
class Started:
    run: Run
    work: list[Work]


def get_run(s: Session, org_id: str, run_id: str, *, lock: bool = False) -> Run:
    # lock: read it fresh under the row lock, for callers that write counters back.
    run = s.get(Run, run_id, with_for_update=True if lock else None, populate_existing=lock)
    if run is None or run.organization_id != org_id:
        raise NotFound(f"run {run_id} not found")
    return run


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
    graph = parse_graph(graph_dict, max_blocks=10_000)
    check_inputs(graph, inputs)
    now = utcnow()
    run = Run(
        organization_id=org_id,
        workflow_id=wf.id,
        version=number,
        version_name=version_name,
        status=RunStatus.NOT_STARTED,
        config={**graph_dict, "settings": settings},
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
    graph = parse_graph(run.config, max_blocks=10_000)
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


def mark_queued(s: Session, model: Any, ids: Sequence[str]) -> int:
    """After a successful publish: pending -> queued (a no-op for rows a worker already took)."""
    return transition(
        s,
        STEP,
        model,
        list(ids),
        StepState.QUEUED,
        expect=[StepState.PENDING],
        values={"queued_at": utcnow()},
    )


def list_runs(
    s: Session,
    org_id: str,
    page: PageRequest,
    *,
    workflow_id: str | None = None,
    status: str | None = None,
    original_run_id: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    id_prefix: str | None = None,
) -> Page[Run]:
    stmt = select(Run).where(Run.organization_id == org_id)
    stmt = stmt.where(*created_between(Run, created_from, created_to))
    if id_prefix:
        stmt = stmt.where(*id_starts_with(Run.id, id_prefix))
    if workflow_id:
        stmt = stmt.where(Run.workflow_id == workflow_id)
    if status:
        stmt = stmt.where(Run.status == status)
    if original_run_id:
        stmt = stmt.where(Run.original_run_id == original_run_id)
    return paginate(s, stmt, Run, page)


def list_steps(s: Session, run: Run, page: PageRequest) -> Page[Step]:
    return steps_page(s, run, page)


def turns_of(s: Session, run: Run) -> list[Turn]:
    return list(turns_seen_by(s, run))


def turns_and_comments(s: Session, run: Run) -> tuple[list[Turn], list[Comment]]:
    """Both lists in one statement (UNION ALL): reading a run stays at a fixed query count."""
    text_null = null().cast(Text)
    turns = select(
        literal("turn").label("kind"),
        Turn.id,
        Turn.turn_index.label("ord"),
        Turn.input.label("a"),
        Turn.output.label("b"),
        Turn.started_at.label("t1"),
        Turn.completed_at.label("t2"),
        text_null.label("author"),
        text_null.label("display_name"),
        text_null.label("text"),
    ).where(seen_by(Turn, run))
    comments = select(
        literal("comment"),
        Comment.id,
        literal(0),
        null().cast(Json),
        null().cast(Json),
        Comment.created_at,
        null().cast(Comment.created_at.type),
        Comment.author,
        Comment.display_name,
        Comment.text,
    ).where(Comment.run_id == run.id)
    out_turns: list[Turn] = []
    out_comments: list[Comment] = []
    for row in s.execute(union_all(turns, comments)).all():
        if row.kind == "turn":
            out_turns.append(
                Turn(
                    id=row.id,
                    run_id=run.id,
                    turn_index=row.ord,
                    input=row.a,
                    output=row.b,
                    started_at=row.t1,
                    completed_at=row.t2,
                )
            )
        else:
            out_comments.append(
                Comment(
                    id=row.id,
                    run_id=run.id,
                    author=row.author,
                    display_name=row.display_name,
                    text=row.text,
                    created_at=row.t1,
                )
            )
    out_turns.sort(key=lambda t: t.turn_index)
    out_comments.sort(key=lambda c: c.id)
    return out_turns, out_comments


def comments_of(s: Session, run: Run) -> list[Comment]:
    return list(s.scalars(select(Comment).where(Comment.run_id == run.id).order_by(Comment.id)))


def usage_of(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """(token_usage, latency_stats) of the model calls this run made itself."""
    return summarize_usage(
        [
            (u["provider"], u["model"], u["calls"], u["prompt"], u["completion"], u["latency_ms"])
            for u in run.usage or []
        ]
    )


def summarize_usage(rows: Sequence[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    prompt = completion = calls = latency = 0
    by_model: dict[str, dict[str, int]] = {}
    by_provider: dict[str, dict[str, int]] = {}
    lat_by_model: dict[str, dict[str, Any]] = {}
    for provider, model, n, p, c, lat in rows:
        p, c, lat, n = int(p or 0), int(c or 0), int(lat or 0), int(n or 0)
        prompt, completion, calls, latency = prompt + p, completion + c, calls + n, latency + lat
        for bucket, key in ((by_model, model), (by_provider, provider)):
            entry = bucket.setdefault(key, {"total": 0, "prompt": 0, "completion": 0})
            entry["prompt"] += p
            entry["completion"] += c
            entry["total"] += p + c
        lm = lat_by_model.setdefault(model, {"calls": 0, "total_ms": 0})
        lm["calls"] += n
        lm["total_ms"] += lat
    token_usage = {
        "total": prompt + completion,
        "prompt": prompt,
        "completion": completion,
        "by_model": by_model,
        "by_provider": by_provider,
    }
    latency_stats = {
        "total_calls": calls,
        "avg_latency_ms": round(latency / calls, 1) if calls else 0.0,
        "by_model": {
            m: {"calls": v["calls"], "avg_latency_ms": round(v["total_ms"] / v["calls"], 1)}
            for m, v in lat_by_model.items()
            if v["calls"]
        },
    }
    return token_usage, latency_stats


def add_comment(
    s: Session, run: Run, *, author: str, text: str, display_name: str | None = None
) -> Comment:
    comment = Comment(run_id=run.id, author=author, display_name=display_name, text=text)
    s.add(comment)
    s.flush()
    return comment


def pause_run(s: Session, org_id: str, run_id: str) -> Run:
    run = get_run(s, org_id, run_id)
    moved = transition(
        s,
        RUN,
        Run,
        run.id,
        RunStatus.PAUSED,
        expect=[RunStatus.NOT_STARTED, RunStatus.STARTED, RunStatus.RUNNING],
        values={"updated_at": utcnow()},
    )
    if not moved:
        raise Conflict(f"a {run.status} run cannot be paused")
    record_run(s, run)
    return run


def resume_run(s: Session, org_id: str, run_id: str) -> tuple[Run, list[Work]]:
    """paused -> running; the steps that waited are published again."""
    run = get_run(s, org_id, run_id)
    moved = transition(
        s,
        RUN,
        Run,
        run.id,
        RunStatus.RUNNING,
        expect=[RunStatus.PAUSED],
        values={"updated_at": utcnow()},
    )
    if not moved:
        raise Conflict(f"a {run.status} run cannot be resumed")
    record_run(s, run)
    ids = s.scalars(
        select(Step.id).where(
            Step.run_id == run.id, Step.state.in_([StepState.PENDING, StepState.QUEUED])
        )
    ).all()
    if not ids:
        # The last step settled while the run was paused, so no settlement is left to
        # close the turn: do it here (the UPDATE above holds the run's row lock).
        graph = parse_graph(run.config, max_blocks=10_000)
        if Scheduler(session=s, run=run, graph=graph, now=utcnow()).finish_turn():
            s.flush()
            s.refresh(run)
    return run, [Work(kind=WorkKind.STEP, id=i) for i in ids]


def cancel_run(s: Session, org_id: str, run_id: str) -> tuple[Run, list[Work]]:
    # Locked: terminate_run adds to steps_done, which the flush writes back as a value.
    run = get_run(s, org_id, run_id, lock=True)
    if RUN.is_terminal(run.status):
        raise Conflict(f"the run is already {run.status}")
    revoke = terminate_run(s, run, RunStatus.CANCELLED, TerminationReason.CANCELLED, now=utcnow())
    if revoke is None:
        raise Conflict("the run ended while it was being cancelled")
    # terminate_run counted the closed steps on the object: flush before re-reading it,
    # or the refresh throws that progress away (the session does not autoflush).
    s.flush()
    s.refresh(run)
    return run, revoke
