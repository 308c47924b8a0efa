"""Workflows: one mutable draft, immutable numbered versions (0 is the graph created with)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import Workflow, WorkflowVersion
from engine.db.session import lock_row
from engine.errors import Conflict, FieldError, Invalid, NotFound
from engine.graph.model import Graph
from engine.graph.parse import parse_graph
from engine.limits import route_errors
from engine.pages import Page, PageRequest, paginate
from engine.shapes import check_shapes


def _graph_dict(graph: Graph) -> dict[str, Any]:
    return graph.as_dict()


def get_workflow(s: Session, org_id: str, workflow_id: str, *, lock: bool = False) -> Workflow:
    wf = lock_row(s, Workflow, workflow_id) if lock else s.get(Workflow, workflow_id)
    if wf is None or wf.organization_id != org_id:
        raise NotFound(f"workflow {workflow_id} not found")
    return wf


# Where a client's graph sits in its request body, for the ``loc`` of validation errors.
BODY: tuple[str, ...] = ("body",)


# Routes per router (QUORUM_MAX_ROUTES_PER_ROUTER): each route is evaluated, at a cost,
# on every visit of the router.
MAX_ROUTES = 50


def _parse_client_graph(
    blocks: list[Any], edges: list[Any], max_blocks: int, max_routes: int = MAX_ROUTES
) -> Graph:
    graph = _parse(
        {"blocks": blocks, "edges": edges}, max_blocks, max_routes, loc=BODY, strict=True
    )
    check_shapes(graph, BODY)
    return graph


def _parse(
    data: Mapping[str, Any],
    max_blocks: int,
    max_routes: int,
    *,
    loc: tuple[str, ...],
    strict: bool = False,
) -> Graph:
    # Limits first: checking a graph compiles every route's expression.
    errors = route_errors(data.get("blocks"), max_routes=max_routes, loc=loc)
    if errors:
        raise Invalid("the graph is invalid", errors=errors)
    return parse_graph(data, max_blocks=max_blocks, loc=loc, strict=strict)


def _check_settings(
    s: Session, org_id: str, settings: Mapping[str, Any] | None, workflow_id: str | None = None
) -> None:
    """A workflow may name only an evaluation workflow of its own organization."""
    evaluation_id = (settings or {}).get("evaluation_workflow_id")
    if evaluation_id is None:
        return
    loc = (*BODY, "settings", "evaluation_workflow_id")
    if evaluation_id == workflow_id:
        raise Invalid(
            "a workflow cannot evaluate itself",
            errors=[FieldError(loc=loc, msg="must name another workflow")],
        )
    target = s.get(Workflow, evaluation_id)
    if target is None or target.organization_id != org_id:
        raise Invalid(
            f"evaluation workflow {evaluation_id} not found",
            errors=[FieldError(loc=loc, msg="no such workflow")],
        )


def create_workflow(
    s: Session,
    org_id: str,
    *,
    name: str,
    blocks: list[Any],
    edges: list[Any],
    description: str | None = None,
    settings: Mapping[str, Any] | None = None,
    max_blocks: int = 200,
    max_routes: int = MAX_ROUTES,
) -> Workflow:
    graph = _parse_client_graph(blocks, edges, max_blocks, max_routes)
    _check_settings(s, org_id, settings)
    draft = _graph_dict(graph)
    wf = Workflow(
        organization_id=org_id,
        name=name,
        description=description,
        draft=draft,
        settings=dict(settings or {}),
        latest_version=0,
    )
    s.add(wf)
    s.flush()
    s.add(
        WorkflowVersion(
            workflow_id=wf.id,
            number=0,
            name=None,
            graph=copy.deepcopy(draft),
            settings=dict(wf.settings),
        )
    )
    s.flush()
    return wf


def list_workflows(s: Session, org_id: str, page: PageRequest) -> Page[Workflow]:
    stmt = select(Workflow).where(Workflow.organization_id == org_id)
    return paginate(s, stmt, Workflow, page)


def versions_of(s: Session, workflow_id: str) -> list[WorkflowVersion]:
    return list(
        s.scalars(
            select(WorkflowVersion)
            .where(WorkflowVersion.workflow_id == workflow_id)
            .order_by(WorkflowVersion.number)
        )
    )


def replace_draft(
    s: Session,
    org_id: str,
    workflow_id: str,
    *,
    blocks: list[Any],
    edges: list[Any],
    settings: Mapping[str, Any] | None = None,
    max_blocks: int = 200,
    max_routes: int = MAX_ROUTES,
) -> Workflow:
    # Not found comes before invalid, for a missing and another organization's workflow alike.
    get_workflow(s, org_id, workflow_id)
    # Checked before the row is locked: checking a graph evaluates the tenant's schemas.
    graph = _parse_client_graph(blocks, edges, max_blocks, max_routes)
    wf = get_workflow(s, org_id, workflow_id, lock=True)
    _check_settings(s, org_id, settings, workflow_id=wf.id)
    wf.draft = _graph_dict(graph)
    if settings is not None:
        wf.settings = dict(settings)
    s.flush()
    return wf


def patch_block(
    s: Session,
    org_id: str,
    workflow_id: str,
    block_id: str,
    *,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    max_blocks: int = 200,
    max_routes: int = MAX_ROUTES,
) -> Workflow:
    wf = get_workflow(s, org_id, workflow_id)
    seen = copy.deepcopy(wf.draft)
    blocks = copy.deepcopy(wf.draft.get("blocks", []))
    index = next((i for i, b in enumerate(blocks) if b.get("id") == block_id), None)
    if index is None:
        raise NotFound(f"block {block_id} not found in the draft of workflow {workflow_id}")
    if name is not None:
        blocks[index]["name"] = name
    if config is not None:
        blocks[index]["config"] = dict(config)
    try:
        graph = _parse(
            {"blocks": blocks, "edges": wf.draft.get("edges", [])},
            max_blocks,
            max_routes,
            loc=("draft",),
        )
        check_shapes(graph, ("draft",))
    except Invalid as exc:
        raise Invalid(
            f"the change to block {block_id} makes the draft invalid",
            errors=[_patch_loc(e, index) for e in exc.errors],
        ) from None
    # Checked before the row is locked (a graph check evaluates the tenant's schemas); a
    # draft replaced in the meantime would be overwritten, so that is a conflict.
    s.expire(wf)
    wf = get_workflow(s, org_id, workflow_id, lock=True)
    if wf.draft != seen:
        raise Conflict("the draft changed while the block was checked; retry")
    wf.draft = _graph_dict(graph)
    s.flush()
    return wf


def _patch_loc(error: FieldError, index: int) -> FieldError:
    """Errors in the patched block point into the request body; others into the draft."""
    head = ("draft", "blocks", index)
    if error.loc[:3] == head and len(error.loc) > 3 and error.loc[3] in ("name", "config"):
        return FieldError(loc=(*BODY, *error.loc[3:]), msg=error.msg)
    return error


def publish_version(
    s: Session, org_id: str, workflow_id: str, *, name: str | None
) -> WorkflowVersion:
    wf = get_workflow(s, org_id, workflow_id, lock=True)
    number = wf.latest_version + 1
    version = WorkflowVersion(
        workflow_id=wf.id,
        number=number,
        name=name,
        graph=copy.deepcopy(wf.draft),
        settings=dict(wf.settings),
    )
    wf.latest_version = number
    s.add(version)
    s.flush()
    return version


MAX_VERSION = 2**31 - 1  # the column is a 32-bit integer


def get_version(s: Session, org_id: str, workflow_id: str, number: int) -> WorkflowVersion:
    get_workflow(s, org_id, workflow_id)
    if not 0 <= number <= MAX_VERSION:
        raise NotFound(f"version {number} of workflow {workflow_id} not found")
    version = s.scalar(
        select(WorkflowVersion).where(
            WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.number == number
        )
    )
    if version is None:
        raise NotFound(f"version {number} of workflow {workflow_id} not found")
    return version


def resolve_graph(
    s: Session, wf: Workflow, version: int | str | None
) -> tuple[int | None, str | None, dict[str, Any], dict[str, Any]]:
    """(version number or None for the draft, version name, graph, settings) a run pins."""
    if version == "draft":
        return None, "draft", copy.deepcopy(wf.draft), dict(wf.settings)
    number = wf.latest_version if version is None else version
    if not isinstance(number, int) or isinstance(number, bool):
        raise Invalid(
            "version must be a number or 'draft'",
            errors=[FieldError(loc=("body", "version"), msg="a number or 'draft'")],
        )
    v = None
    if 0 <= number <= MAX_VERSION:
        v = s.scalar(
            select(WorkflowVersion).where(
                WorkflowVersion.workflow_id == wf.id, WorkflowVersion.number == number
            )
        )
    if v is None:
        raise Invalid(
            f"workflow {wf.id} has no version {number}",
            errors=[FieldError(loc=("body", "version"), msg=f"no version {number}")],
        )
    return v.number, v.name, copy.deepcopy(v.graph), dict(v.settings or {})
