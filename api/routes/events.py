"""Live run events as Server-Sent Events: ``GET /v1/workflows/runs/{run_id}/events``.

Each message is ``id: <seq>``, ``event: run | steps``, ``data: <json>``. A client resumes
with ``Last-Event-ID`` (or ``?after=``): the last ``seq`` it saw. The stream replays the stored
events after it, then sends new ones as they are stored, a ``: keepalive`` comment every
:data:`HEARTBEAT_S` seconds of silence, and ends after an event with a terminal run status
(for a run already terminal, after the replay), or after :data:`MAX_STREAM_S` in any case.

Under ``quorum api`` (api.asgi) the stream is served on the event loop once this route has
checked the request; elsewhere (the embedded test server) it holds one thread. No database
transaction is held between reads.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any, Literal

from flask import Blueprint, Response, request, stream_with_context
from pydantic import BaseModel, ConfigDict, Field

import engine.runs as svc
from api.auth import current
from api.problems import ApiProblem
from api.registry import registry
from api.runtime import runtime
from engine.errors import FieldError
from engine.eventstream import StoredEvent, follow

bp = Blueprint("events", __name__)
route = registry.route

MAX_STREAM_S = 3600.0  # a stream ends after an hour; the client resumes with Last-Event-ID
HEARTBEAT_S = 15.0
POLL_S = 2.0  # read the table at least this often, even without a notification
RETRY_MS = 2000  # the reconnection delay suggested to EventSource clients
MAX_SEQ = 2**63 - 1
LAST_EVENT_ID = "Last-Event-ID"
# Between api.asgi and this route only (see there); never honoured without the token.
STREAM_HEADER = "X-Quorum-Async-Stream"
EVENT_STREAM = "text/event-stream"


class EventsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: int | None = Field(
        None,
        ge=0,
        le=MAX_SEQ,
        description="the last event seq already seen; the Last-Event-ID header wins",
    )


# A step in a ``steps`` event: ``status`` is its lifecycle's status (same name and values).
_STEP_SUMMARY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {
            "enum": ["pending", "queued", "running", "completed", "error", "cancelled", "skipped"]
        },
        "reason": {"type": ["string", "null"]},
        "error_type": {"type": ["string", "null"]},
    },
}

# What ``data`` holds, as JSON: a ``run`` event or a ``steps`` event.
_EVENT_DATA: dict[str, Any] = {
    "type": "object",
    "required": ["at"],
    "properties": {
        "at": {"type": "string", "format": "date-time"},
        "run_id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
        "status": {"type": "string"},
        "termination_reason": {"type": ["string", "null"]},
        "current_turn": {"type": "integer"},
        "progress": {
            "type": "object",
            "properties": {
                "steps_total": {"type": "integer"},
                "steps_done": {"type": "integer"},
            },
        },
        "steps": {"type": "array", "items": _STEP_SUMMARY},
    },
}


class RunEventMessage(BaseModel):
    """One message of the event stream: the fields of its SSE lines (all text).

    On the wire: ``id: <seq>``, ``event: run | steps``, ``data: <one line of JSON>`` and a
    blank line; ``: keepalive`` comments in between.
    """

    id: str = Field(
        pattern=r"^[0-9]+$",
        description="the event's seq: send it back as Last-Event-ID to resume",
    )
    event: Literal["run", "steps"] = Field(
        description="run (status, termination_reason, progress) or steps (their new status)"
    )
    data: str = Field(
        description="the event as one line of JSON",
        json_schema_extra={"contentMediaType": "application/json", "contentSchema": _EVENT_DATA},
    )


def _resume_point(query: EventsQuery) -> int:
    raw = request.headers.get(LAST_EVENT_ID, "").strip()
    if not raw:
        return query.after or 0
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_SEQ:
        raise ApiProblem(
            422,
            "Last-Event-ID must be the seq of an event (a non-negative integer)",
            errors=[FieldError(loc=("header", LAST_EVENT_ID), msg="a non-negative integer")],
        )
    return int(raw)


def hand_over(kind: str, target: str, after: int | None) -> Response | None:
    """Under api.asgi, the answer that hands the stream over to the event loop, else None.

    The marker header names the stream (``run <run id>`` or ``feed <organization id>``),
    where it resumes (``-1``: at the present) and the key it is counted against.
    """
    token = runtime().stream_token
    if token is None or not secrets.compare_digest(request.headers.get(STREAM_HEADER, ""), token):
        return None
    resp = Response(b"", mimetype=EVENT_STREAM)
    position = -1 if after is None else after
    resp.headers[STREAM_HEADER] = f"{kind} {target} {position} {current().key_prefix}"
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


def format_event(event: StoredEvent) -> str:
    data = json.dumps(event.data, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n"


@route(
    bp,
    "GET",
    "/v1/workflows/runs/<run_id>/events",
    summary="Follow a run's events (Server-Sent Events, resumable with Last-Event-ID)",
    tag="runs",
    query=EventsQuery,
    errors=(404,),
    response=RunEventMessage,
    content=(EVENT_STREAM,),
)
def run_events(run_id: str, query: EventsQuery) -> Any:
    after = _resume_point(query)
    rt = runtime()
    with rt.db.transaction() as s:
        svc.get_run(s, current().organization_id, run_id)  # 404 before streaming
    handed = hand_over("run", run_id, after)
    if handed is not None:
        return handed

    def messages() -> Iterator[str]:
        # Sent at once, so the client gets the headers before the first event.
        yield f": run {run_id}\nretry: {RETRY_MS}\n\n"
        for event in follow(
            rt.db,
            rt.events,
            run_id,
            after,
            heartbeat_s=HEARTBEAT_S,
            max_s=MAX_STREAM_S,
            poll_s=POLL_S,
        ):
            yield ": keepalive\n\n" if event is None else format_event(event)

    resp = Response(stream_with_context(messages()), mimetype=EVENT_STREAM)
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp
