"""Idempotency keys: a repeated POST with the same ``Idempotency-Key`` gets the first answer.

The protocol, one short transaction per move so a record is visible to concurrent requests:

1. :func:`claim` inserts a placeholder (``status`` 0) under (organization, key). The
   primary key makes exactly one of several concurrent requests the owner.
2. The owner does the work, then :func:`finish` stores the status and JSON body of a
   successful answer, or :func:`release` deletes the placeholder when the work failed, so
   the client may retry with the same key.
3. A request that finds the key taken gets a :class:`Replay` of the stored answer, a
   :class:`KeyInUse` (409) while the first request is still in progress, or a
   :class:`KeyReused` (422) when the key was first used on another method or path.

A placeholder whose request died (process killed between claim and finish) is taken over
after ``stale_after_s``; a finished record expires after ``expire_after_s`` and the key can
then be used afresh. The claim token stored in the placeholder fences a slow first owner:
it can neither finish nor release a placeholder that was taken over.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.clock import as_utc, utcnow
from engine.db.models import IdempotencyRecord
from engine.db.session import Database
from engine.errors import Conflict, FieldError, Invalid

HEADER = "Idempotency-Key"
IN_PROGRESS = 0
MAX_KEY_LENGTH = 200
MAX_PATH_LENGTH = 400  # the column's width
STALE_AFTER_S = 300.0
EXPIRE_AFTER_S = 24 * 3600.0
_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")
_ATTEMPTS = 5


@dataclass(frozen=True, kw_only=True)
class Claim:
    """This request owns the key: it must :func:`finish` or :func:`release` it."""

    organization_id: str
    key: str
    token: str


@dataclass(frozen=True, kw_only=True)
class Replay:
    """The stored first answer for the key: its status and its JSON text."""

    status: int
    body: Any


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


def claim(
    db: Database,
    *,
    organization_id: str,
    key: str,
    method: str,
    path: str,
    now: datetime | None = None,
    stale_after_s: float = STALE_AFTER_S,
    expire_after_s: float = EXPIRE_AFTER_S,
) -> Claim | Replay:
    """Own the key (a :class:`Claim`) or get the first answer (a :class:`Replay`).

    Raises :class:`KeyInUse` while another request holds the key and :class:`KeyReused`
    when the key belongs to another method or path.
    """
    check_key(key)
    method = method.upper()
    path = path[:MAX_PATH_LENGTH]
    for _ in range(_ATTEMPTS):
        current = now or utcnow()
        token = secrets.token_hex(12)
        try:
            with db.transaction() as s:
                s.add(
                    IdempotencyRecord(
                        organization_id=organization_id,
                        key=key,
                        method=method,
                        path=path,
                        status=IN_PROGRESS,
                        body={"claim": token},
                        created_at=current,
                    )
                )
                s.flush()
            return Claim(organization_id=organization_id, key=key, token=token)
        except IntegrityError:
            pass  # the key is taken: look at what holds it
        with db.transaction() as s:
            rec = _locked(s, organization_id, key)
            if rec is None:
                continue  # released in the meantime: claim again
            age = (current - (as_utc(rec.created_at) or current)).total_seconds()
            if rec.status != IN_PROGRESS and age > expire_after_s:
                s.delete(rec)
                continue
            if rec.method != method or rec.path != path:
                raise KeyReused(
                    f"this {HEADER} was used for {rec.method} {rec.path}; use a new key",
                    errors=[FieldError(loc=("header", HEADER), msg="already used elsewhere")],
                )
            if rec.status == IN_PROGRESS:
                if age <= stale_after_s:
                    raise KeyInUse(
                        f"a request with this {HEADER} is still in progress; retry shortly"
                    )
                # Its request died between claim and finish: take the key over.
                rec.body = {"claim": token}
                rec.created_at = current
                return Claim(organization_id=organization_id, key=key, token=token)
            return Replay(status=rec.status, body=rec.body)
    raise KeyInUse(f"the {HEADER} is contended; retry shortly")


def finish(db: Database, claim_: Claim, *, status: int, body: Any) -> bool:
    """Store the answer; False when the claim was lost (taken over after going stale).

    ``body`` is any JSON value; the API stores the answer's JSON text (a string) so that
    a replay is byte for byte the first answer.
    """
    with db.transaction() as s:
        rec = _owned(s, claim_)
        if rec is None:
            return False
        rec.status = status
        rec.body = body
        rec.created_at = utcnow()
        return True


def release(db: Database, claim_: Claim) -> bool:
    """Forget the key so that the client can retry it; False when the claim was lost."""
    with db.transaction() as s:
        rec = _owned(s, claim_)
        if rec is None:
            return False
        s.delete(rec)
        return True


def purge(
    db: Database, *, now: datetime | None = None, older_than_s: float = EXPIRE_AFTER_S
) -> int:
    """Delete finished records past their expiry (for a periodic task); returns the count."""
    cutoff = (now or utcnow()) - timedelta(seconds=older_than_s)
    with db.transaction() as s:
        result = s.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.status != IN_PROGRESS, IdempotencyRecord.created_at < cutoff
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


def _locked(s: Session, organization_id: str, key: str) -> IdempotencyRecord | None:
    return s.get(IdempotencyRecord, (organization_id, key), with_for_update=True)


def _owned(s: Session, claim_: Claim) -> IdempotencyRecord | None:
    rec = _locked(s, claim_.organization_id, claim_.key)
    if rec is None or rec.status != IN_PROGRESS or rec.body != {"claim": claim_.token}:
        return None
    return rec
