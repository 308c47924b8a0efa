"""Principals of recently used API keys, so that most requests read no key from the database.

A key is cached under a hash of the whole key (prefix and secret: a wrong secret never
matches) for at most ``ttl_s`` seconds. Revocation reaches the cache two ways:

- ``quorum keys revoke`` (:func:`engine.auth.revoke_key`) sends a PostgreSQL ``NOTIFY``
  with the key's prefix when its transaction commits; a :class:`RevocationListener`
  thread in each API process holds a connection that ``LISTEN``s and evicts the key at
  once. The cache is used only while that connection is up: from its loss until it is
  back, every request reads its key from the database again, and a reconnect empties
  the cache (revocations sent meanwhile were missed).
- any other change of a key (an ``UPDATE`` by hand) is seen after ``ttl_s`` at the latest.

A request that read its key from the database caches it only if no revocation arrived
while it read (a generation counter): a key revoked during that read is not cached.
Unknown and refused keys are never cached.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.auth import REVOKED_CHANNEL, Principal

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from engine.settings import Settings

log = logging.getLogger("quorum.api.keycache")

Clock = Callable[[], float]
MAX_KEYS = 10_000
# How long the listener waits for a notification before it checks that it should go on
# (what closing it may take), and how often it checks that its connection still works.
POLL_S = 0.2
CHECK_S = 5.0
RECONNECT_S = 2.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyCache:
    """Thread-safe; trusted only while :meth:`set_live` says revocations are heard."""

    def __init__(
        self, ttl_s: float, *, clock: Clock = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("the key cache needs a positive time to live")
        self.ttl_s = ttl_s
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._generation = 0
        self._live = False

    @property
    def generation(self) -> int:
        """Take it before reading a key from the database; hand it to :meth:`put`."""
        return self._generation

    def get(self, token: str) -> Principal | None:
        digest = _digest(token)
        with self._lock:
            if not self._live:
                return None
            found = self._entries.get(digest)
            if found is None:
                return None
            principal, expires = found
            if self._clock() >= expires:
                del self._entries[digest]
                return None
            return principal

    def put(self, token: str, principal: Principal, generation: int) -> None:
        digest = _digest(token)
        with self._lock:
            if not self._live or generation != self._generation:
                return  # not heard, or a revocation arrived during the caller's read
            if len(self._entries) >= self._max_keys:
                self._entries.clear()  # bounded memory; the keys in use come back at once
            self._entries[digest] = (principal, self._clock() + self.ttl_s)

    def revoked(self, prefix: str) -> None:
        with self._lock:
            self._generation += 1
            for digest in [d for d, (p, _) in self._entries.items() if p.key_prefix == prefix]:
                del self._entries[digest]

    def set_live(self, live: bool) -> None:
        """Revocations are (or are no longer) heard; either way, forget every key."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._live = live


class RevocationListener:
    """A daemon thread that ``LISTEN``s for revoked keys on its own connection."""

    def __init__(self, cache: KeyCache, connect: Callable[[], Any]) -> None:
        self.cache = cache
        self._connect = connect
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="key-revocations", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        lost = False
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {REVOKED_CHANNEL}")
                    self.cache.set_live(True)
                    if lost:
                        log.warning("key revocations are heard again; caching keys again")
                        lost = False
                    checked = time.monotonic()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=POLL_S):
                            self.cache.revoked(note.payload)
                        if time.monotonic() - checked >= CHECK_S:
                            # A round trip: a connection that died silently fails here.
                            conn.execute("SELECT 1")
                            checked = time.monotonic()
            except Exception as exc:
                self.cache.set_live(False)
                if not lost:
                    log.warning(
                        "key revocations are not heard (%s); reading every key from the"
                        " database until they are",
                        type(exc).__name__,
                    )
                    lost = True
                self._stop.wait(RECONNECT_S)
        self.cache.set_live(False)


def start_key_cache(
    settings: Settings, engine: Engine
) -> tuple[KeyCache, RevocationListener] | None:
    """A cache and its running listener, or None where revocations cannot be heard."""
    if settings.auth_cache_s <= 0 or engine.dialect.driver != "psycopg":
        return None  # SQLite (one process, nobody to tell) or another driver: no cache
    import psycopg

    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    cparams.pop("context", None)  # SQLAlchemy's adapters; this connection only listens

    def connect() -> Any:
        return psycopg.connect(
            *cargs,
            **cparams,
            autocommit=True,
            connect_timeout=3,
            # A peer gone without a word (a cut network) fails within seconds, not hours.
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=2,
            tcp_user_timeout=5000,
        )

    cache = KeyCache(settings.auth_cache_s)
    listener = RevocationListener(cache, connect)
    listener.start()
    return cache, listener
