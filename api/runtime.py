"""What the API needs per process: settings, database, dispatcher."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app

from api.keycache import KeyCache, RevocationListener, start_key_cache
from engine import handoff
from engine.db.session import Database
from engine.events import EventBus
from engine.ports import Dispatcher, Work
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
    # Set by api.asgi: the token its event stream handover carries (None: no handover).
    stream_token: str | None = None
    _keys: KeyCache | None = None
    _listener: RevocationListener | None = None
    _keys_started: bool = False
    _keys_lock: threading.Lock = field(default_factory=threading.Lock)

    def key_cache(self) -> KeyCache | None:
        """This process's cache of checked API keys, None where there is none.

        Started on first use, so that its listener thread and connection belong to the
        process that serves (a gunicorn worker, after the fork).
        """
        if not self._keys_started:
            with self._keys_lock:
                if not self._keys_started:
                    started = start_key_cache(self.settings, self.db.engine)
                    if started is not None:
                        self._keys, self._listener = started
                    self._keys_started = True
        return self._keys

    def publish(self, model: Any, work: Sequence[Work]) -> bool:
        """Publish committed rows, then mark them queued; False leaves them to the outbox."""
        self._crash_after_commit(work)
        return handoff.hand_off(self.db, self.dispatcher, work, mark={model: [w.id for w in work]})

    def dispatch(self, work: Sequence[Work]) -> bool:
        """Publish committed rows (no more); False when the broker did not take them.

        The rows stay ``pending`` then, and the outbox publishes them later.
        """
        self._crash_after_commit(work)
        return handoff.publish(self.dispatcher, work)

    def revoke(self, work: Sequence[Work]) -> None:
        handoff.revoke(self.dispatcher, work)

    def notify(self, run_ids: Sequence[str]) -> None:
        handoff.notify(self.events, run_ids)

    def _crash_after_commit(self, work: Sequence[Work]) -> None:
        if work and self.settings.has_fault("api.crash_after_commit"):
            # Test-only: die between commit and publish, as a killed API process would.
            os._exit(70)

    def close(self) -> None:
        with self._keys_lock:
            self._keys_started = True  # a request still in flight starts no new listener
            if self._listener is not None:
                self._listener.close()
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
