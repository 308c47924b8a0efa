"""Rows -> the contract's JSON shapes."""

from __future__ import annotations

from typing import Any

from engine.clock import rfc3339
from engine.db.models import BlockExecution, Comment, Run, Step, Turn, Workflow, WorkflowVersion


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


def lifecycle(row: Step | BlockExecution) -> dict[str, Any]:
    state = row.state
    out: dict[str, Any] = {"state": state}
    # Every path that moves a row sets these times; the fallbacks keep the documented
    # shape (a time, never null) for a row written otherwise.
    if state == "queued":
        out["queued_at"] = rfc3339(row.queued_at or row.created_at)
    elif state == "running":
        started = row.started_at or row.queued_at or row.created_at
        out.update(started_at=rfc3339(started), worker=row.worker, attempt=row.attempt or 0)
    elif state == "error":
        out["error"] = {"type": row.error_type, "message": row.error_message}
    elif state in ("cancelled", "skipped"):
        out["reason"] = row.reason
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
    return {
        "id": ex.id,
        "workflow_id": ex.workflow_id,
        "run_id": ex.run_id,
        "block_id": ex.block_id,
        "block_type": ex.block_type,
        "lifecycle": lifecycle(ex),
        # Like the run's own ``version``: a run of the draft answers "draft".
        "workflow_version": ex.workflow_version if ex.workflow_version is not None else "draft",
        "inputs": ex.inputs or {},
        "outputs": ex.outputs,
        "artifact": ex.artifact,
        "active_output_handles": ex.active_output_handles,
        "duration_ms": ex.duration_ms,
        "created_at": rfc3339(ex.created_at),
        "started_at": rfc3339(ex.started_at),
        "completed_at": rfc3339(ex.completed_at),
        "block_config": ex.block_config,
        "step_id": ex.step_id,
        "available_iterations": ex.available_iterations,
        "n_consensus": ex.n_consensus,
        "consensus": ex.consensus,
    }


def execution_as_queued(ex: BlockExecution) -> dict[str, Any]:
    """The execution as it was when handed to the broker, before any worker touched it."""
    return {
        **execution(ex),
        "lifecycle": {"state": "queued", "queued_at": rfc3339(ex.queued_at or ex.created_at)},
        "outputs": None,
        "artifact": None,
        "active_output_handles": None,
        "duration_ms": None,
        "started_at": None,
        "completed_at": None,
        "consensus": None,
    }
