"""Rows -> the contract's JSON shapes."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Mapping
from typing import Any

from engine.clock import rfc3339
from engine.db.models import BlockExecution, Comment, Run, Step, Turn, Workflow, WorkflowVersion
from engine.pages import Page


def workflow(wf: Workflow, versions: list[WorkflowVersion]) -> dict[str, Any]:
    return {
        "id": wf.id,
        "name": wf.name,
        "description": wf.description,
        "draft": wf.draft,
        "settings": wf.settings or {},
        "latest_version": wf.latest_version,
        "versions": [
            {"number": v.number, "name": v.name, "created_at": rfc3339(v.created_at)}
            for v in versions
        ],
        "created_at": rfc3339(wf.created_at),
        "updated_at": rfc3339(wf.updated_at),
    }


def workflow_summary(wf: Workflow) -> dict[str, Any]:
    return {
        "id": wf.id,
        "name": wf.name,
        "description": wf.description,
        "latest_version": wf.latest_version,
        "created_at": rfc3339(wf.created_at),
        "updated_at": rfc3339(wf.updated_at),
    }


def version(v: WorkflowVersion) -> dict[str, Any]:
    return {
        "workflow_id": v.workflow_id,
        "number": v.number,
        "name": v.name,
        "graph": v.graph,
        "settings": v.settings or {},
        "created_at": rfc3339(v.created_at),
    }


# A terminal row always names why; these answer for a row stored without it.
UNKNOWN_REASON = "unspecified"
UNKNOWN_ERROR = "error"


def lifecycle(row: Step | BlockExecution) -> dict[str, Any]:
    status = row.state
    out: dict[str, Any] = {"status": status}
    # Every path that moves a row sets these times; the fallbacks keep the documented
    # shape (a time, never null) for a row written otherwise.
    if status == "queued":
        out["queued_at"] = rfc3339(row.queued_at or row.created_at)
    elif status == "running":
        started = row.started_at or row.queued_at or row.created_at
        out.update(started_at=rfc3339(started), worker=row.worker, attempt=row.attempt or 0)
    elif status == "error":
        kind = row.error_type or UNKNOWN_ERROR
        message = row.error_message or kind
        out.update(message=message, error={"type": kind, "message": message})
    elif status in ("cancelled", "skipped"):
        out["reason"] = row.reason or UNKNOWN_REASON
    return out


def step(st: Step) -> dict[str, Any]:
    return {
        "id": st.id,
        "run_id": st.run_id,
        "step_id": st.step_id,
        "block_id": st.block_id,
        "block_type": st.block_type,
        "turn_index": st.turn_index,
        "iteration": st.scope or None,
        "visit": st.visit,
        "attempt": st.attempt or 0,
        "lifecycle": lifecycle(st),
        "inputs": st.inputs or {},
        "outputs": st.outputs,
        "active_output_handles": st.active_output_handles,
        "duration_ms": st.duration_ms,
        "n_consensus": st.n_consensus,
        "consensus": st.consensus,
        "created_at": rfc3339(st.created_at),
        "queued_at": rfc3339(st.queued_at),
        "started_at": rfc3339(st.started_at),
        "completed_at": rfc3339(st.completed_at),
        "worker": st.worker,
    }


def io_pair(t: Turn) -> dict[str, Any]:
    return {
        "turn_index": t.turn_index,
        "input": t.input,
        "output": t.output,
        "started_at": rfc3339(t.started_at),
        "completed_at": rfc3339(t.completed_at),
    }


def comment(c: Comment) -> dict[str, Any]:
    return {
        "id": c.id,
        "author": c.author,
        "display_name": c.display_name,
        "text": c.text,
        "created_at": rfc3339(c.created_at),
    }


def run(
    r: Run,
    *,
    turns: list[Turn],
    comments: list[Comment],
    token_usage: dict[str, Any],
    latency_stats: dict[str, Any],
) -> dict[str, Any]:
    return {
        **run_summary(r),
        "io_pairs": [io_pair(t) for t in turns],
        "comments": [comment(c) for c in comments],
        "token_usage": token_usage,
        "latency_stats": latency_stats,
        "config": r.config,
        "evaluation": r.evaluation,
    }


def run_summary(r: Run) -> dict[str, Any]:
    return {
        "id": r.id,
        "workflow_id": r.workflow_id,
        "version": r.version if r.version is not None else "draft",
        "version_name": r.version_name,
        "status": r.status,
        "termination_reason": r.termination_reason,
        "initiator": r.initiator,
        "metadata": r.metadata_ or {},
        "original_run_id": r.original_run_id,
        "parent_turn_index": r.parent_turn_index,
        "is_evaluation": r.is_evaluation,
        "progress": {"steps_total": r.steps_total, "steps_done": r.steps_done},
        # In lists too: a failed run shows its failing block at a glance.
        "error": r.error,
        "created_at": rfc3339(r.created_at),
        "updated_at": rfc3339(r.updated_at),
        "completed_at": rfc3339(r.completed_at),
    }


def execution(ex: BlockExecution) -> dict[str, Any]:
    version = ex.workflow_version
    return {
        "id": ex.id,
        "workflow_id": ex.workflow_id,
        "source_run_id": ex.run_id,
        "source_step_id": ex.step_id,
        "block_id": ex.block_id,
        "block_type": ex.block_type,
        "lifecycle": lifecycle(ex),
        # Like the run's own ``version``: a run of the draft answers "draft".
        "workflow_version_id": "draft" if version is None else str(version),
        "handle_inputs": handles(ex.inputs or {}),
        "handle_outputs": None if ex.outputs is None else handles(ex.outputs),
        "artifact": artifact(ex),
        "routing_decisions": ex.active_output_handles,
        "duration_ms": ex.duration_ms,
        "created_at": rfc3339(ex.created_at),
        "started_at": rfc3339(ex.started_at),
        "completed_at": rfc3339(ex.completed_at),
        "block_config": ex.block_config,
        "available_iterations": ex.available_iterations or None,
        "n_consensus": ex.n_consensus,
        "consensus": ex.consensus,
    }


def execution_as_queued(ex: BlockExecution) -> dict[str, Any]:
    """The execution as it was when handed to the broker, before any worker touched it."""
    return {
        **execution(ex),
        "lifecycle": {"status": "queued", "queued_at": rfc3339(ex.queued_at or ex.created_at)},
        "handle_outputs": None,
        "artifact": None,
        "routing_decisions": None,
        "duration_ms": None,
        "started_at": None,
        "completed_at": None,
        "consensus": None,
    }


# What each block type produces, named as the seed system's artifact operations.
OPERATIONS = {
    "extract": "extraction",
    "split": "split",
    "classifier": "classification",
    "router": "conditional_evaluation",
    "function": "function_invocation",
}


def artifact(ex: BlockExecution) -> dict[str, Any] | None:
    """What a completed execution produced; it is stored on the execution itself."""
    operation = OPERATIONS.get(ex.block_type)
    if operation is None or ex.state != "completed":
        return None
    return {"operation": operation, "id": ex.id}


def handles(values: Mapping[str, Any]) -> dict[str, Any]:
    """Stored handle values -> ``{"type": "json", "data"}`` or ``{"type": "file", "document"}``."""
    out: dict[str, Any] = {}
    for handle, value in values.items():
        if isinstance(value, Mapping) and value.get("type") == "file":
            out[handle] = {"type": "file", "document": _document(value)}
        elif isinstance(value, Mapping) and value.get("type") == "json":
            out[handle] = {"type": "json", "data": value.get("data")}
        else:
            out[handle] = {"type": "json", "data": value}
    return out


def _document(file: Mapping[str, Any]) -> dict[str, str]:
    # A file input is an object with at least a name; its id and type when it gave them.
    name = str(file.get("filename") or file.get("name") or "")
    mime = file.get("mime_type") or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return {"id": str(file.get("id") or name), "filename": name, "mime_type": str(mime)}


def page(p: Page[Any], view: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": [view(item) for item in p.items],
        "has_more": p.has_more,
        "next_after": p.next_after,
        "list_metadata": {"before": p.before, "after": p.after},
    }
