"""After commit, the one hand-off to the broker: publish, then mark queued; revoke; notify.

A row is committed ``pending`` before any message names it, so a worker never finds it
missing. Publishing it is a nudge: if the broker does not take it, the row stays pending
and the outbox (engine.outbox) publishes it again. Once the broker took it the row is
marked ``queued``, which the contract reads as "handed to the broker"; a worker that
claimed the row first moved it on already, and the mark leaves it alone. Revokes and
event notifications are best effort: a revoked row's late completion is fenced anyway,
and event listeners poll.

Used by the worker wing (its settles' new work), the outbox sweeper and the API.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine.clock import utcnow
from engine.db.session import Database
from engine.events import EventBus
from engine.lifecycle import STEP, StepState, transition
from engine.ports import Dispatcher, Work

log = logging.getLogger("quorum.handoff")


def mark_queued(s: Session, model: Any, ids: Sequence[str], *, now: datetime | None = None) -> int:
    """After a successful publish: pending -> queued (a no-op for rows a worker already took)."""
    return transition(
        s,
        STEP,
        model,
        list(ids),
        StepState.QUEUED,
        expect=[StepState.PENDING],
        values={"queued_at": now or utcnow()},
    )


def publish(dispatcher: Dispatcher, work: Sequence[Work], *, strict: bool = False) -> bool:
    """Publish committed rows; False (or, ``strict``, the error) when the broker refused."""
    if not work:
        return True
    try:
        dispatcher.dispatch(list(work))
    except Exception:
        if strict:
            raise
        # The rows are committed: the outbox sweeper publishes them again.
        log.warning("publish failed; left to the outbox", extra={"count": len(work)}, exc_info=True)
        return False
    return True


def hand_off(
    db: Database,
    dispatcher: Dispatcher,
    work: Sequence[Work],
    *,
    mark: Mapping[Any, Sequence[str]],
    strict: bool = False,
) -> bool:
    """Publish committed rows, then mark the ``mark`` ones (model -> ids) queued.

    False leaves them pending, to the outbox.
    """
    if not publish(dispatcher, work, strict=strict):
        return False
    if any(mark.values()):
        with db.transaction() as s:
            for model, ids in mark.items():
                if ids:
                    mark_queued(s, model, ids)
    return True


def revoke(dispatcher: Dispatcher, work: Sequence[Work]) -> None:
    """Best effort: a revoked row's late, fenced completion is discarded anyway."""
    if not work:
        return
    try:
        dispatcher.revoke(list(work))
    except Exception:
        log.warning("revoke failed", exc_info=True)


def notify(events: EventBus, run_ids: Iterable[str]) -> None:
    """Nudge event listeners about these runs (best effort: listeners poll anyway)."""
    try:
        events.notify(run_ids)
    except Exception:
        log.debug("event notification failed", exc_info=True)
