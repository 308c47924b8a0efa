"""Idempotency keys: a repeated POST with the same ``Idempotency-Key`` gets the first answer.

The record of a key is written **in the transaction of the work it guards**, with the
answer, so a request's effect and its record commit together or not at all: a retry after
any fault (a crash, a database restart, a failed publish) finds either the first answer or
nothing done, never one unit of work without its record.

1. :func:`enter`, first thing in the work's transaction: on PostgreSQL a transaction-level
   advisory lock on the key, so a concurrent request with the same key answers
   :class:`KeyInUse` (409) while the first one's transaction is open, and is free the moment
   it ends, committed, rolled back, or its connection gone (a key is never held longer
   than the request that holds it; SQLite transactions are serialized anyway). Then the
   stored record, if any: :class:`Replayed` carries the first answer, and a key first used
   with another method, path or body is :class:`KeyReused` (422).
2. :func:`remember` adds the record (status and the answer's JSON text) to the same
   transaction; :func:`amend` replaces the answer in a later one (the API marks a block
   execution queued after publishing it, and a replay shows that answer).

Only successful answers are recorded (a failed request rolls its transaction back), so a
client may retry a failed request with the same key. Records expire after
``expire_after_s``; the key can then be used afresh.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from engine.clock import as_utc, utcnow
from engine.db.models import IdempotencyRecord
from engine.db.session import Database
from engine.errors import Conflict, FieldError, Invalid
from engine.store.dialects import store_for

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200
MAX_PATH_LENGTH = 400  # the column's width
EXPIRE_AFTER_S = 24 * 3600.0
_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")


@dataclass(frozen=True, kw_only=True)
class Guard:
    """One request's key and what it was sent with."""

    organization_id: str
    key: str
    method: str
    path: str
    fingerprint: str


@dataclass(frozen=True, kw_only=True)
class Replay:
    """The stored first answer for the key: its status and its JSON text."""

    status: int
    body: Any


class Replayed(Exception):
    """The key already has an answer: the request must give it instead of doing work."""

    def __init__(self, replay: Replay) -> None:
        super().__init__("replayed")
        self.replay = replay


class KeyInUse(Conflict):
    pass


class KeyReused(Invalid):
    pass


def check_key(key: str) -> None:
    """1 to 200 printable ASCII characters, else :class:`Invalid` (422)."""
    if not _KEY.fullmatch(key):
        raise Invalid(
            f"the {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            errors=[
                FieldError(
                    loc=("header", HEADER),
                    msg=f"1 to {MAX_KEY_LENGTH} printable ASCII characters",
                )
            ],
        )


def fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 of the method, the path and the body (as canonical JSON when it is JSON, so
    that key order and whitespace do not matter; an empty body reads as ``{}``)."""
    try:
        canonical = json.dumps(
            json.loads(body) if body.strip() else {}, sort_keys=True, separators=(",", ":")
        ).encode()
    except (ValueError, RecursionError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def guard(*, organization_id: str, key: str, method: str, path: str, body: bytes) -> Guard:
    check_key(key)
    return Guard(
        organization_id=organization_id,
        key=key,
        method=method.upper(),
        path=path[:MAX_PATH_LENGTH],
        fingerprint=fingerprint(method, path, body),
    )


def enter(s: Session, g: Guard, *, now: datetime | None = None) -> None:
    """Hold the key for this transaction, or raise :class:`KeyInUse`, :class:`Replayed`
    or :class:`KeyReused`."""
    if not store_for(s).try_transaction_lock(s, _lock_name(g)):
        raise KeyInUse(f"a request with this {HEADER} is in progress; retry shortly")
    rec = s.get(IdempotencyRecord, (g.organization_id, g.key), populate_existing=True)
    if rec is None:
        return
    age = ((now or utcnow()) - (as_utc(rec.created_at) or utcnow())).total_seconds()
    if age > EXPIRE_AFTER_S:
        s.delete(rec)
        s.flush()
        return
    if rec.method != g.method or rec.path != g.path:
        raise KeyReused(
            f"this {HEADER} was used for {rec.method} {rec.path}; use a new key",
            errors=[FieldError(loc=("header", HEADER), msg="already used elsewhere")],
        )
    if rec.fingerprint is not None and rec.fingerprint != g.fingerprint:
        raise KeyReused(
            f"this {HEADER} was used with another request body; use a new key",
            errors=[FieldError(loc=("header", HEADER), msg="already used with another body")],
        )
    raise Replayed(Replay(status=rec.status, body=rec.body))


def _lock_name(g: Guard) -> str:
    return f"quorum.idempotency:{g.organization_id}:{g.key}"


def remember(s: Session, g: Guard, *, status: int, body: Any) -> None:
    """Record the answer in the caller's transaction (after :func:`enter`)."""
    s.add(
        IdempotencyRecord(
            organization_id=g.organization_id,
            key=g.key,
            method=g.method,
            path=g.path,
            fingerprint=g.fingerprint,
            status=status,
            body=body,
            created_at=utcnow(),
        )
    )
    s.flush()


def amend(s: Session, g: Guard, *, body: Any) -> None:
    """Replace the recorded answer (in a transaction after the one that recorded it)."""
    s.execute(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.organization_id == g.organization_id,
            IdempotencyRecord.key == g.key,
            IdempotencyRecord.fingerprint == g.fingerprint,
        )
        .values(body=body)
    )


def purge(
    db: Database, *, now: datetime | None = None, older_than_s: float = EXPIRE_AFTER_S
) -> int:
    """Delete records past their expiry (for a periodic task); returns the count."""
    cutoff = (now or utcnow()) - timedelta(seconds=older_than_s)
    with db.transaction() as s:
        result = s.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)
