"""Block executions: re-run one block of a past run against the current draft."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import text

import api.idempotent as idempotent
import api.views as views
import engine.executions as svc
from api.auth import current
from api.bodies import CreateExecution
from api.execution_resources import BlockExecution, BlockExecutionPage
from api.queries import ExecutionsListQuery
from api.registry import registry
from api.runtime import runtime

bp = Blueprint("executions", __name__)
route = registry.route


def _read(execution_id: str) -> dict[str, Any]:
    with runtime().db.transaction() as s:
        return views.execution(svc.get_execution(s, current().organization_id, execution_id))


@route(
    bp,
    "POST",
    "/v1/workflows/blocks/executions",
    summary="Re-run one block of a past run against the current draft",
    tag="block executions",
    body=CreateExecution,
    status=202,
    errors=(404, 409),
    response=BlockExecution,
)
def create_execution(body: CreateExecution) -> Any:
    rt = runtime()
    # One connection, no read-back: two reads, the INSERT, the publish, the "queued" mark.
    # With an Idempotency-Key the INSERT and the key's record commit together, so the
    # session is a transaction then (else each statement commits by itself).
    keyed = idempotent.active()
    with rt.db.sessions() if keyed else rt.db.autocommit() as s:
        idempotent.enter(s)
        ex, work = svc.create_execution(
            s,
            current().organization_id,
            run_id=body.run_id,
            block_id=body.block_id,
            step_id=body.step_id,
            n_consensus=body.n_consensus,
            check_eligibility=body.check_eligibility,
        )
        answer = views.execution(ex)
        idempotent.remember(s, answer)
        # Committed before any message names the row: a worker never finds it missing,
        # and a publish that fails (or a process that dies here) leaves a pending row for
        # the outbox; a retry with the key gets this answer.
        s.commit()
        if not rt.dispatch(work):
            return answer  # pending: the outbox publishes it later
        # The mark makes "queued" mean "handed to the broker", as the contract says; a
        # pending row would read as never dispatched. It is its own one-statement commit:
        # losing it (a crash right here) leaves the row pending, which the worker's claim
        # and the outbox both handle, and a duplicate message is harmless.
        if rt.settings.has_fault("api.backend_lost_before_mark"):
            # Test-only: the connection dies here, as in a database restart.
            s.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        queued = svc.mark_queued(s, ex)
        # A worker took the row (or even finished it) before the mark: answer with the
        # execution as it was handed to the broker, as a 202 promises; GET shows the rest.
        answer = views.execution(ex) if queued else views.execution_as_queued(ex)
        idempotent.amend(s, answer)
        s.commit()
    return answer


@route(
    bp,
    "GET",
    "/v1/workflows/blocks/executions",
    summary="List block executions",
    tag="block executions",
    query=ExecutionsListQuery,
    response=BlockExecutionPage,
)
def list_executions(query: ExecutionsListQuery) -> Any:
    with runtime().db.transaction() as s:
        page = svc.list_executions(
            s,
            current().organization_id,
            query.page(),
            run_id=query.run_id,
            block_id=query.block_id,
            workflow_id=query.workflow_id,
        )
        return views.page(page, views.execution)


@route(
    bp,
    "GET",
    "/v1/workflows/blocks/executions/<execution_id>",
    summary="Read a block execution",
    tag="block executions",
    response=BlockExecution,
)
def get_execution(execution_id: str) -> Any:
    return _read(execution_id)


@route(
    bp,
    "POST",
    "/v1/workflows/blocks/executions/<execution_id>/cancel",
    summary="Cancel a block execution",
    tag="block executions",
    errors=(409,),
    response=BlockExecution,
)
def cancel_execution(execution_id: str) -> Any:
    rt = runtime()
    with rt.db.transaction() as s:
        idempotent.enter(s)
        ex, revoke = svc.cancel_execution(s, current().organization_id, execution_id)
        out = views.execution(ex)
        idempotent.remember(s, out)
    rt.revoke(revoke)
    return out
