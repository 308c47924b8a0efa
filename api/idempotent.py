"""``Idempotency-Key`` for the routes: the key's record commits with the route's work.

A keyed POST is wrapped by :func:`keyed_answer` (see ``api.routing``); the route itself calls
:func:`enter` first thing in the transaction that does its work and :func:`remember` with its
answer before that transaction commits (both do nothing for a request without a key). A
request whose key already has an answer gets that answer, byte for byte, with
``Idempotent-Replayed: true``. See ``engine.idempotency`` for the protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, g, request
from sqlalchemy.orm import Session

import engine.idempotency as idempotency

REPLAYED_HEADER = "Idempotent-Replayed"
_G = "quorum_idempotency"


@dataclass(kw_only=True)
class _Pending:
    guard: idempotency.Guard
    status: int
    remembered: bool = False


def _pending() -> _Pending | None:
    return getattr(g, _G, None)


def dump(payload: Any) -> str:
    """An answer's JSON text: what the route sends and what a replay sends again."""
    return json.dumps(payload, separators=(",", ":"))


def keyed_answer(key: str, status: int, answer: Callable[[], Response]) -> Response:
    guard = idempotency.guard(
        organization_id=g.principal.organization_id,
        key=key,
        method=request.method,
        path=request.path,
        body=request.get_data(cache=True),
    )
    pending = _Pending(guard=guard, status=status)
    setattr(g, _G, pending)
    try:
        resp = answer()
    except idempotency.Replayed as found:
        return replay_response(found.replay)
    finally:
        setattr(g, _G, None)
    if 200 <= resp.status_code < 300 and not pending.remembered:
        # A route that takes a key must record its answer with its work (a bug otherwise:
        # a retry would do the work again).
        raise RuntimeError(f"{request.method} {request.path} did not record its key")
    return resp


def replay_response(replay: idempotency.Replay) -> Response:
    body = replay.body if isinstance(replay.body, str) else dump(replay.body)
    resp = Response(body, status=replay.status, mimetype="application/json")
    resp.headers[REPLAYED_HEADER] = "true"
    return resp


def enter(s: Session) -> None:
    """Hold this request's key in ``s``'s transaction: 409 while another request holds
    it, 422 when it was used with another request, or the first answer (raised)."""
    pending = _pending()
    if pending is not None:
        idempotency.enter(s, pending.guard)


def remember(s: Session, payload: Any) -> None:
    """Record ``payload`` as this request's answer, in ``s``'s transaction."""
    pending = _pending()
    if pending is not None:
        idempotency.remember(s, pending.guard, status=pending.status, body=dump(payload))
        pending.remembered = True


def amend(s: Session, payload: Any) -> None:
    """Replace the recorded answer (a later transaction of the same request)."""
    pending = _pending()
    if pending is not None and pending.remembered:
        idempotency.amend(s, pending.guard, body=dump(payload))


def active() -> bool:
    return _pending() is not None
