"""Runs: start, read, list, steps, and control (pause, resume, cancel), comments."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

import api.idempotent as idempotent
import api.resources as resources
import api.views as views
import engine.run.control as control
import engine.runs as svc
from api.auth import current
from api.bodies import CheckpointBody, CommentBody, CreateRun, RunInput
from api.queries import PageQuery, RunsListQuery
from api.registry import registry
from api.runtime import runtime
from engine.db.models import Run, Step
from engine.limits import check_active_runs
from engine.ports import Work
from engine.run.fork import fork_run
from engine.run.start import start_run
from engine.run.turns import answer_input as answer
from engine.run.turns import awaiting, validate_answer

bp = Blueprint("runs", __name__)
route = registry.route


def run_view(s: Any, run: Run) -> dict[str, Any]:
    token_usage, latency_stats = svc.usage_of(run)
    turns, comments = svc.turns_and_comments(s, run)
    return views.run(
        run,
        turns=turns,
        comments=comments,
        token_usage=token_usage,
        latency_stats=latency_stats,
    )


def _answer(s: Any, run: Run) -> dict[str, Any]:
    """A control route's answer: the run as this transaction leaves it, recorded with it."""
    s.flush()
    s.refresh(run)  # compare-and-set updates went around the object
    answer = run_view(s, run)
    idempotent.remember(s, answer)
    return answer


def _read(run_id: str) -> dict[str, Any]:
    with runtime().db.transaction() as s:
        return run_view(s, svc.get_run(s, current().organization_id, run_id))


@route(
    bp,
    "POST",
    "/v1/workflows/runs",
    summary="Start a run",
    tag="runs",
    body=CreateRun,
    status=202,
    errors=(404,),
    response=resources.Run,
)
def create_run(body: CreateRun) -> Any:
    rt = runtime()
    with rt.db.transaction() as s:
        idempotent.enter(s)
        check_active_runs(s, current().organization_id, rt.settings)
        started = start_run(
            s,
            current().organization_id,
            workflow_id=body.workflow_id,
            inputs=body.inputs,
            version=body.version,
            metadata=body.metadata,
            initiator=body.initiator,
        )
        # The answer is the run as stored: read before publishing, or a fast worker
        # would already have moved it on.
        answer = run_view(s, started.run)
        idempotent.remember(s, answer)
    rt.publish(Step, started.work)
    return answer


@route(
    bp,
    "GET",
    "/v1/workflows/runs",
    summary="List runs",
    tag="runs",
    query=RunsListQuery,
    response=resources.RunPage,
)
def list_runs(query: RunsListQuery) -> Any:
    with runtime().db.transaction() as s:
        page = svc.list_runs(
            s,
            current().organization_id,
            query.page(),
            workflow_id=query.workflow_id,
            status=query.status,
            original_run_id=query.original_run_id,
            created_from=query.created_from,
            created_to=query.created_to,
            id_prefix=query.id_prefix,
        )
        return views.page(page, views.run_summary)


@route(
    bp,
    "GET",
    "/v1/workflows/runs/<run_id>",
    summary="Read a run",
    tag="runs",
    response=resources.Run,
)
def get_run(run_id: str) -> Any:
    return _read(run_id)


@route(
    bp,
    "GET",
    "/v1/workflows/runs/<run_id>/steps",
    summary="List a run's steps",
    tag="runs",
    query=PageQuery,
    response=resources.StepPage,
)
def list_steps(run_id: str, query: PageQuery) -> Any:
    with runtime().db.transaction() as s:
        run = svc.get_run(s, current().organization_id, run_id)
        return views.page(svc.list_steps(s, run, query.page()), views.step)


@route(
    bp,
    "POST",
    "/v1/workflows/runs/<run_id>/pause",
    summary="Pause a run",
    tag="runs",
    errors=(409,),
    response=resources.Run,
)
def pause_run(run_id: str) -> Any:
    with runtime().db.transaction() as s:
        idempotent.enter(s)
        answer = _answer(s, control.pause_run(s, current().organization_id, run_id))
    runtime().notify([run_id])
    return answer


@route(
    bp,
    "POST",
    "/v1/workflows/runs/<run_id>/resume",
    summary="Resume a paused run",
    tag="runs",
    errors=(409,),
    response=resources.Run,
)
def resume_run(run_id: str) -> Any:
    rt = runtime()
    with rt.db.transaction() as s:
        idempotent.enter(s)
        run, work = control.resume_run(s, current().organization_id, run_id)
        answer = _answer(s, run)
    rt.publish(Step, work)
    runtime().notify([run_id])
    return answer


@route(
    bp,
    "POST",
    "/v1/workflows/runs/<run_id>/cancel",
    summary="Cancel a run",
    tag="runs",
    errors=(409,),
    response=resources.Run,
)
def cancel_run(run_id: str) -> Any:
    rt = runtime()
    revoke: list[Work]
    with rt.db.transaction() as s:
        idempotent.enter(s)
        run, revoke = control.cancel_run(s, current().organization_id, run_id)
        answer = _answer(s, run)
    rt.revoke(revoke)
    runtime().notify([run_id])
    return answer


@route(
    bp,
    "POST",
    "/v1/workflows/runs/<run_id>/comments",
    summary="Comment on a run",
    tag="runs",
    body=CommentBody,
    status=201,
    response=resources.Comment,
)
def add_comment(run_id: str, body: CommentBody) -> Any:
    with runtime().db.transaction() as s:
        idempotent.enter(s)
        run = svc.get_run(s, current().organization_id, run_id)
        # The author is the key that wrote it; what the client calls itself is a label.
        comment = svc.add_comment(
            s, run, author=current().key_prefix, display_name=body.display_name, text=body.text
        )
        answer = views.comment(comment)
        idempotent.remember(s, answer)
        return answer


@route(
    bp,
    "POST",
    "/v1/workflows/runs/<run_id>/input",
    summary="Answer a run waiting for user input (starts the next turn)",
    tag="runs",
    body=RunInput,
    status=202,
    errors=(409,),
    response=resources.Run,
)
def answer_input(run_id: str, body: RunInput) -> Any:
    rt = runtime()
    org_id = current().organization_id
    with rt.db.transaction() as s:
        idempotent.enter(s)  # a repeat gets its first answer, not "no longer waiting"
        checked = awaiting(s, org_id, run_id)
    # The tenant's schema is evaluated with no transaction open and no row locked.
    validate_answer(checked.schema, body.input)
    with rt.db.transaction() as s:
        idempotent.enter(s)
        work = answer(s, org_id, run_id, body.input, checked=checked)
        view = _answer(s, svc.get_run(s, org_id, run_id))
    rt.publish(Step, work)
    runtime().notify([run_id])
    return view


@route(
    bp,
    "POST",
    "/v1/workflows/runs/<run_id>/checkpoint",
    summary="Start a new run from a checkpoint (turn index) of this run",
    tag="runs",
    body=CheckpointBody,
    status=202,
    response=resources.Run,
)
def checkpoint(run_id: str, body: CheckpointBody) -> Any:
    rt = runtime()
    kwargs: dict[str, Any] = {}
    if "input" in body.model_fields_set:
        kwargs["input"] = body.input
    with rt.db.transaction() as s:
        idempotent.enter(s)
        check_active_runs(s, current().organization_id, rt.settings)
        started = fork_run(
            s, current().organization_id, run_id, resume_turn_index=body.resume_turn_index, **kwargs
        )
        answer = run_view(s, started.run)
        idempotent.remember(s, answer)
    rt.publish(Step, started.work)
    return answer
