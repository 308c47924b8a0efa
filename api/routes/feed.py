"""The organization's run feed as Server-Sent Events: ``GET /v1/workflows/runs/events``.

One stream for a whole runs list: the ``run`` events (status, termination reason, progress)
of every run of the caller's organization, in order, resumable like a run's own stream
(``Last-Event-ID`` or ``?after=``). Without a resume point it starts at the present: its first
message is ``id: <seq>`` alone, the point to resume from. The logic is
:func:`engine.runfeed.follow_org`; this route only frames it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request, stream_with_context

from api.auth import current
from api.registry import registry
from api.routes.events import (
    EVENT_STREAM,
    HEARTBEAT_S,
    LAST_EVENT_ID,
    MAX_STREAM_S,
    RETRY_MS,
    EventsQuery,
    RunEventMessage,
    _resume_point,
    format_event,
    hand_over,
)
from api.runtime import runtime
from engine.runfeed import Position, follow_org

bp = Blueprint("feed", __name__)
route = registry.route

POLL_S = 1.0


@route(
    bp,
    "GET",
    "/v1/workflows/runs/events",
    summary="Follow the run events of all the organization's runs (Server-Sent Events)",
    tag="runs",
    query=EventsQuery,
    response=RunEventMessage,
    content=(EVENT_STREAM,),
)
def org_run_events(query: EventsQuery) -> Any:
    resumed = bool(request.headers.get(LAST_EVENT_ID, "").strip()) or query.after is not None
    after = _resume_point(query) if resumed else None
    rt = runtime()
    org_id = current().organization_id
    handed = hand_over("feed", org_id, after)
    if handed is not None:
        return handed  # served by api.asgi on its event loop

    def messages() -> Iterator[str]:
        yield f": runs\nretry: {RETRY_MS}\n\n"
        for item in follow_org(
            rt.db, org_id, after, heartbeat_s=HEARTBEAT_S, max_s=MAX_STREAM_S, poll_s=POLL_S
        ):
            if item is None:
                yield ": keepalive\n\n"
            elif isinstance(item, Position):
                yield f"id: {item.seq}\n\n"
            else:
                yield format_event(item)

    resp = Response(stream_with_context(messages()), mimetype=EVENT_STREAM)
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp
