"""Runs from the API's side: start, read, list and control."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Text, literal, null, select, union_all
from sqlalchemy.orm import Session

from engine.db.models import Comment, Json, Run, Step, Turn
from engine.errors import NotFound
from engine.lineage import seen_by, steps_page, turns_seen_by
from engine.listfilters import created_between, id_starts_with
from engine.pages import Page, PageRequest, paginate


def get_run(s: Session, org_id: str, run_id: str, *, lock: bool = False) -> Run:
    # lock: read it fresh under the row lock, for callers that write counters back.
    run = s.get(Run, run_id, with_for_update=True if lock else None, populate_existing=lock)
    if run is None or run.organization_id != org_id:
        raise NotFound(f"run {run_id} not found")
    return run


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
