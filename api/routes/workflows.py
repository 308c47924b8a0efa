"""Workflows: create, list, read, replace draft, patch a block, publish and read versions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

import api.idempotent as idempotent
import api.resources as resources
import api.views as views
import engine.workflows as svc
from api.auth import current
from api.bodies import CreateWorkflow, PatchBlock, PublishVersion, ReplaceDraft
from api.queries import DraftDiffQuery, PageQuery
from api.registry import registry
from api.resources import GraphDiff
from api.runtime import runtime
from engine.graph.diff import diff_draft

bp = Blueprint("workflows", __name__)
route = registry.route


def _settings(body: Any) -> dict[str, Any] | None:
    return body.settings.model_dump(exclude_none=True) if body.settings is not None else None


@route(
    bp,
    "POST",
    "/v1/workflows",
    summary="Create a workflow (version 0 is its graph)",
    tag="workflows",
    body=CreateWorkflow,
    status=201,
    response=resources.Workflow,
)
def create_workflow(body: CreateWorkflow) -> Any:
    rt = runtime()
    with rt.db.transaction() as s:
        idempotent.enter(s)
        wf = svc.create_workflow(
            s,
            current().organization_id,
            name=body.name,
            description=body.description,
            blocks=body.blocks,
            edges=body.edges,
            settings=_settings(body) or {},
            max_blocks=rt.settings.max_blocks_per_graph,
            max_routes=rt.settings.max_routes_per_router,
        )
        answer = views.workflow(wf, svc.versions_of(s, wf.id))
        idempotent.remember(s, answer)
        return answer


@route(
    bp,
    "GET",
    "/v1/workflows",
    summary="List workflows",
    tag="workflows",
    query=PageQuery,
    response=resources.WorkflowPage,
)
def list_workflows(query: PageQuery) -> Any:
    with runtime().db.transaction() as s:
        page = svc.list_workflows(s, current().organization_id, query.page())
        return views.page(page, views.workflow_summary)


@route(
    bp,
    "GET",
    "/v1/workflows/<workflow_id>",
    summary="Read a workflow with its draft",
    tag="workflows",
    response=resources.Workflow,
)
def get_workflow(workflow_id: str) -> Any:
    with runtime().db.transaction() as s:
        wf = svc.get_workflow(s, current().organization_id, workflow_id)
        return views.workflow(wf, svc.versions_of(s, wf.id))


@route(
    bp,
    "PUT",
    "/v1/workflows/<workflow_id>/draft",
    summary="Replace the draft graph",
    tag="workflows",
    body=ReplaceDraft,
    response=resources.Workflow,
)
def replace_draft(workflow_id: str, body: ReplaceDraft) -> Any:
    rt = runtime()
    with rt.db.transaction() as s:
        wf = svc.replace_draft(
            s,
            current().organization_id,
            workflow_id,
            blocks=body.blocks,
            edges=body.edges,
            settings=_settings(body),
            max_blocks=rt.settings.max_blocks_per_graph,
            max_routes=rt.settings.max_routes_per_router,
        )
        return views.workflow(wf, svc.versions_of(s, wf.id))


@route(
    bp,
    "PATCH",
    "/v1/workflows/<workflow_id>/draft/blocks/<block_id>",
    summary="Change one block of the draft",
    tag="workflows",
    body=PatchBlock,
    response=resources.Workflow,
)
def patch_block(workflow_id: str, block_id: str, body: PatchBlock) -> Any:
    rt = runtime()
    with rt.db.transaction() as s:
        wf = svc.patch_block(
            s,
            current().organization_id,
            workflow_id,
            block_id,
            name=body.name,
            config=body.config,
            max_blocks=rt.settings.max_blocks_per_graph,
            max_routes=rt.settings.max_routes_per_router,
        )
        return views.workflow(wf, svc.versions_of(s, wf.id))


@route(
    bp,
    "POST",
    "/v1/workflows/<workflow_id>/versions",
    summary="Publish the draft as the next version",
    tag="workflows",
    body=PublishVersion,
    status=201,
    response=resources.Version,
)
def publish_version(workflow_id: str, body: PublishVersion) -> Any:
    with runtime().db.transaction() as s:
        idempotent.enter(s)
        v = svc.publish_version(s, current().organization_id, workflow_id, name=body.name)
        answer = views.version(v)
        idempotent.remember(s, answer)
        return answer


@route(
    bp,
    "GET",
    "/v1/workflows/<workflow_id>/versions/<int:number>",
    summary="Read one published version",
    tag="workflows",
    response=resources.Version,
)
def get_version(workflow_id: str, number: int) -> Any:
    with runtime().db.transaction() as s:
        return views.version(svc.get_version(s, current().organization_id, workflow_id, number))


@route(
    bp,
    "GET",
    "/v1/workflows/<workflow_id>/draft/diff",
    summary="The draft against a published version: blocks and edges added, removed, changed",
    tag="workflows",
    query=DraftDiffQuery,
    response=GraphDiff,
)
def draft_diff(workflow_id: str, query: DraftDiffQuery) -> Any:
    with runtime().db.transaction() as s:
        found = diff_draft(s, current().organization_id, workflow_id, query.version)
    return {
        "workflow_id": found.workflow_id,
        "version": found.version,
        "identical": found.diff.is_empty,
        **found.diff.as_dict(),
    }
