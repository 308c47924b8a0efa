"""What the API needs per process: settings, database, dispatcher."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app

from engine.db.session import Database
from engine.events import EventBus
from engine.ports import Dispatcher, Work
from engine.runs import mark_queued
from engine.settings import Settings

if TYPE_CHECKING:
    from api.ratelimit import RateLimiter

log = logging.getLogger("quorum.api")


@dataclass(kw_only=True)
class ApiRuntime:
    settings: Settings
    db: Database
    dispatcher: Dispatcher
    events: EventBus
    limiter: RateLimiter | None = None

    def publish(self, model: Any, work: Sequence[Work]) -> bool:
        """Publish committed rows, then mark them queued; False leaves them to the outbox."""
        if not work:
            return True
        if self.settings.has_fault("api.crash_after_commit"):
            # Test-only: die between commit and publish, as a killed API process would.
            os._exit(70)
        try:
            self.dispatcher.dispatch(work)
        except Exception:
            log.warning("publish failed; the outbox will publish the rows", exc_info=True)
            return False
        with self.db.transaction() as s:
            mark_queued(s, model, [w.id for w in work])
        return True

    def revoke(self, work: Sequence[Work]) -> None:
        """Best effort: a revoked row's late, fenced completion is discarded anyway."""
        if not work:
            return
        try:
            self.dispatcher.revoke(work)
        except Exception:
            log.warning("revoke failed", exc_info=True)

    def close(self) -> None:
        self.db.close()
        if self.limiter is not None:
            self.limiter.close()
        bus_close = getattr(self.events, "close", None)
        if bus_close is not None:
            bus_close()
        closer = getattr(self.dispatcher, "close", None)
        if closer is not None:
            closer()


def runtime() -> ApiRuntime:
    rt: ApiRuntime = current_app.extensions["quorum"]
    return rt
