"""Claiming a row for this process: the fenced move to ``running`` and its lease."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from engine.claims import Claim, claim
from engine.observe import observe_claim
from engine.outbox import held_by
from engine.worker.context import Message

log = logging.getLogger("quorum.worker")


def claim_row(msg: Message, s: Session, model: Any, row_id: str, now: datetime) -> Claim | None:
    dead: set[str] = set()
    c = claim(
        s,
        model,
        row_id,
        worker=msg.worker,
        holder_alive=msg.holder_check,
        lease=timedelta(seconds=msg.settings.lease_s),
        now=now,
        dead_holders=dead,
    )
    if c is not None and msg.leases is not None:
        msg.leases.hold(model, row_id, c.attempt)
    observe_claim(msg.metrics, model, c, now)
    if dead:
        # The process that ran this row died, maybe in the middle of rows it ran
        # in-process after it: publish them again, their claims take them over.
        orphans = held_by(s, sorted(dead))
        if orphans:
            log.warning("recovering rows of a dead holder", extra={"count": len(orphans)})
        msg.after.publish.extend(orphans)
    return c
