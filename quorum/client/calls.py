"""Every API operation as a :class:`~quorum.client.core.Call`: path, body, query, answer model.

Both clients' resource methods are one line over these, so a path or a body is written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from quorum.client._common import (
    MISSING,
    execution_body,
    page,
    page_params,
    params,
    run_body,
    workflow_body,
)
from quorum.client.core import Call
from quorum.client.models import BlockExecution, Comment, Page, Run, Step, Version, Workflow

WORKFLOWS = "/v1/workflows"
RUNS = "/v1/workflows/runs"
EXECUTIONS = "/v1/workflows/blocks/executions"


def _pages(model: Any) -> Any:
    return lambda data: page(model, data)


# -- workflows


def create_workflow(
    name: str,
    blocks: Iterable[Mapping[str, Any]],
    edges: Iterable[Mapping[str, Any]],
    description: str | None,
    settings: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> Call[Workflow]:
    body = workflow_body(name, blocks, edges, description, settings)
    return Call(
        method="POST",
        path=WORKFLOWS,
        json=body,
        idempotency_key=idempotency_key,
        parse=Workflow.parse,
    )


def list_workflows(
    limit: int | None, after: str | None, before: str | None, order: str | None
) -> Call[Page[Workflow]]:
    query = page_params(limit, after, before, order)
    return Call(method="GET", path=WORKFLOWS, params=query, parse=_pages(Workflow))


def get_workflow(workflow_id: str) -> Call[Workflow]:
    return Call(method="GET", path=f"{WORKFLOWS}/{workflow_id}", parse=Workflow.parse)


def replace_draft(
    workflow_id: str,
    blocks: Iterable[Mapping[str, Any]],
    edges: Iterable[Mapping[str, Any]],
    settings: Mapping[str, Any] | None,
) -> Call[Workflow]:
    body = workflow_body(None, blocks, edges, None, settings)
    path = f"{WORKFLOWS}/{workflow_id}/draft"
    return Call(method="PUT", path=path, json=body, parse=Workflow.parse)


def patch_block(
    workflow_id: str, block_id: str, name: str | None, config: Mapping[str, Any] | None
) -> Call[Workflow]:
    body = params(name=name, config=dict(config) if config is not None else None)
    path = f"{WORKFLOWS}/{workflow_id}/draft/blocks/{block_id}"
    return Call(method="PATCH", path=path, json=body, parse=Workflow.parse)


def publish(workflow_id: str, name: str | None) -> Call[Version]:
    path = f"{WORKFLOWS}/{workflow_id}/versions"
    return Call(method="POST", path=path, json=params(name=name), parse=Version.parse)


def get_version(workflow_id: str, number: int) -> Call[Version]:
    path = f"{WORKFLOWS}/{workflow_id}/versions/{number}"
    return Call(method="GET", path=path, parse=Version.parse)


# -- runs


def create_run(
    workflow_id: str,
    inputs: Mapping[str, Any] | None,
    version: int | str | None,
    metadata: Mapping[str, Any] | None,
    initiator: str | None,
    idempotency_key: str | None,
) -> Call[Run]:
    body = run_body(workflow_id, inputs, version, metadata, initiator)
    return Call(
        method="POST", path=RUNS, json=body, idempotency_key=idempotency_key, parse=Run.parse
    )


def get_run(run_id: str) -> Call[Run]:
    return Call(method="GET", path=f"{RUNS}/{run_id}", parse=Run.parse)


def list_runs(
    *,
    workflow_id: str | None,
    status: str | None,
    original_run_id: str | None,
    created_from: datetime | str | None,
    created_to: datetime | str | None,
    id_prefix: str | None,
    limit: int | None,
    after: str | None,
    before: str | None,
    order: str | None,
) -> Call[Page[Run]]:
    query = params(
        workflow_id=workflow_id,
        status=status,
        original_run_id=original_run_id,
        created_from=created_from,
        created_to=created_to,
        id_prefix=id_prefix,
    ) | page_params(limit, after, before, order)
    return Call(method="GET", path=RUNS, params=query, parse=_pages(Run))


def steps_page(run_id: str, page_size: int, after: str | None) -> Call[Page[Step]]:
    query = params(limit=page_size, after=after)
    return Call(method="GET", path=f"{RUNS}/{run_id}/steps", params=query, parse=_pages(Step))


def control_run(run_id: str, action: str) -> Call[Run]:
    """``pause``, ``resume`` or ``cancel``."""
    return Call(method="POST", path=f"{RUNS}/{run_id}/{action}", parse=Run.parse)


def answer_input(run_id: str, value: Any) -> Call[Run]:
    path = f"{RUNS}/{run_id}/input"
    return Call(method="POST", path=path, json={"input": value}, parse=Run.parse)


def comment(run_id: str, text: str, author: str | None) -> Call[Comment]:
    body = params(text=text, author=author)
    return Call(method="POST", path=f"{RUNS}/{run_id}/comments", json=body, parse=Comment.parse)


def checkpoint(run_id: str, resume_turn_index: int, input: Any) -> Call[Run]:
    body: dict[str, Any] = {"resume_turn_index": resume_turn_index}
    if input is not MISSING:
        body["input"] = input
    return Call(method="POST", path=f"{RUNS}/{run_id}/checkpoint", json=body, parse=Run.parse)


# -- block executions


def create_execution(
    run_id: str,
    block_id: str,
    step_id: str | None,
    n_consensus: int | None,
    check_eligibility: bool | None,
    idempotency_key: str | None,
) -> Call[BlockExecution]:
    body = execution_body(run_id, block_id, step_id, n_consensus, check_eligibility)
    return Call(
        method="POST",
        path=EXECUTIONS,
        json=body,
        idempotency_key=idempotency_key,
        parse=BlockExecution.parse,
    )


def get_execution(execution_id: str) -> Call[BlockExecution]:
    return Call(method="GET", path=f"{EXECUTIONS}/{execution_id}", parse=BlockExecution.parse)


def list_executions(
    run_id: str | None,
    block_id: str | None,
    limit: int | None,
    after: str | None,
    before: str | None,
    order: str | None,
) -> Call[Page[BlockExecution]]:
    query = params(run_id=run_id, block_id=block_id) | page_params(limit, after, before, order)
    return Call(method="GET", path=EXECUTIONS, params=query, parse=_pages(BlockExecution))


def cancel_execution(execution_id: str) -> Call[BlockExecution]:
    path = f"{EXECUTIONS}/{execution_id}/cancel"
    return Call(method="POST", path=path, parse=BlockExecution.parse)
