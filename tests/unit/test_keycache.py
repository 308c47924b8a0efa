"""The API key cache: what it keeps, for how long, and how revocations reach it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from api.keycache import KeyCache, RevocationListener
from engine.auth import REVOKED_CHANNEL, Principal
from engine.memo import Memo

KEY = "qk_0123456789ab_secret-one"
SAME_PREFIX = "qk_0123456789ab_secret-two"
OTHER = "qk_ba9876543210_secret-three"


def principal(prefix: str = "qk_0123456789ab") -> Principal:
    return Principal(organization_id="a" * 24, organization_name="acme", key_prefix=prefix)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> KeyCache:
    c = KeyCache(10.0, clock=clock)
    c.set_live(True)
    return c


def test_a_checked_key_is_kept_for_its_time_to_live_only(cache: KeyCache, clock: Clock) -> None:
    assert cache.get(KEY) is None
    cache.put(KEY, principal(), cache.generation)
    assert cache.get(KEY) == principal()
    # The whole key is the cache key: the same prefix with another secret is not found.
    assert cache.get(SAME_PREFIX) is None
    clock.now += 9.9
    assert cache.get(KEY) == principal()
    clock.now += 0.1
    assert cache.get(KEY) is None


def test_a_revocation_evicts_every_key_of_its_prefix_only(cache: KeyCache) -> None:
    cache.put(KEY, principal(), cache.generation)
    cache.put(OTHER, principal("qk_ba9876543210"), cache.generation)
    cache.revoked("qk_0123456789ab")
    assert cache.get(KEY) is None
    assert cache.get(OTHER) == principal("qk_ba9876543210")


def test_a_key_read_while_a_revocation_arrived_is_not_cached(cache: KeyCache) -> None:
    generation = cache.generation  # the request starts reading the key from the database
    cache.revoked("qk_0123456789ab")  # ...the key is revoked meanwhile...
    cache.put(KEY, principal(), generation)  # ...and the read saw it still valid
    assert cache.get(KEY) is None


def test_nothing_is_cached_while_revocations_are_not_heard(clock: Clock) -> None:
    c = KeyCache(10.0, clock=clock)
    c.put(KEY, principal(), c.generation)
    assert c.get(KEY) is None
    c.set_live(True)
    c.put(KEY, principal(), c.generation)
    assert c.get(KEY) == principal()
    c.set_live(False)  # the listener lost its connection: revocations may be missed
    assert c.get(KEY) is None
    c.set_live(True)  # back: what was cached before is gone for good
    assert c.get(KEY) is None


def test_the_cache_is_bounded(clock: Clock) -> None:
    c = KeyCache(10.0, clock=clock, max_keys=2)
    c.set_live(True)
    for i in range(5):
        c.put(f"qk_0123456789ab_s{i}", principal(), c.generation)
    assert sum(c.get(f"qk_0123456789ab_s{i}") is not None for i in range(5)) <= 2


def test_a_time_to_live_is_required() -> None:
    with pytest.raises(ValueError):
        KeyCache(0)


# -- the listener, on a fake connection -------------------------------------------------------


@dataclass
class Note:
    payload: str


@dataclass
class FakeConnection:
    notes: list[str]
    fail_after: int | None = None
    executed: list[str] = field(default_factory=list)
    rounds: int = 0

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def execute(self, sql: str) -> None:
        self.executed.append(sql)

    def notifies(self, *, timeout: float) -> Iterator[Note]:
        self.rounds += 1
        if self.fail_after is not None and self.rounds > self.fail_after:
            raise OSError("connection lost")
        while self.notes:
            yield Note(self.notes.pop(0))
        time.sleep(0.01)


def wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_the_listener_evicts_revoked_keys() -> None:
    cache = KeyCache(60.0)
    conn = FakeConnection(notes=[])
    listener = RevocationListener(cache, lambda: conn)
    listener.start()
    try:
        wait_for(lambda: cache.generation > 0)  # live
        assert f"LISTEN {REVOKED_CHANNEL}" in conn.executed
        cache.put(KEY, principal(), cache.generation)
        cache.put(OTHER, principal("qk_ba9876543210"), cache.generation)
        assert cache.get(KEY) is not None
        conn.notes.append("qk_0123456789ab")
        wait_for(lambda: cache.get(KEY) is None)
        assert cache.get(OTHER) is not None
    finally:
        listener.close()
    assert cache.get(OTHER) is None  # closed: nothing is trusted any more


def test_a_lost_listener_connection_stops_the_cache_until_it_is_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("api.keycache.RECONNECT_S", 0.05)
    cache = KeyCache(60.0)
    connections = [FakeConnection(notes=[], fail_after=20), FakeConnection(notes=[])]
    handed: list[FakeConnection] = []
    gate = threading.Event()

    def connect() -> FakeConnection:
        if len(handed) == 1:
            gate.wait(5)  # the database is "down" until the test has looked
        if len(handed) >= len(connections):
            raise OSError("no more connections")
        handed.append(connections[len(handed)])
        return handed[-1]

    listener = RevocationListener(cache, connect)
    listener.start()
    try:
        wait_for(lambda: len(handed) == 1 and cache.generation > 0)
        cache.put(KEY, principal(), cache.generation)
        assert cache.get(KEY) is not None
        wait_for(lambda: cache.get(KEY) is None)  # the connection failed: not live
        cache.put(KEY, principal(), cache.generation)
        assert cache.get(KEY) is None
        gate.set()
        wait_for(lambda: len(handed) == 2)

        def cached_again() -> bool:
            cache.put(KEY, principal(), cache.generation)
            return cache.get(KEY) is not None

        wait_for(cached_again)
    finally:
        gate.set()
        listener.close()


# -- the memo used for parsed graphs ----------------------------------------------------------


def test_the_memo_makes_a_value_once_and_forgets_the_least_recently_used() -> None:
    memo: Memo[str, int] = Memo(2)
    made: list[str] = []

    def make(key: str) -> int:
        made.append(key)
        return len(made)

    assert memo.get("a", lambda: make("a")) == 1
    assert memo.get("a", lambda: make("a")) == 1
    assert memo.get("b", lambda: make("b")) == 2
    assert memo.peek("a") == 1  # used: "b" is now the least recently used
    assert memo.get("c", lambda: make("c")) == 3
    assert memo.peek("b") is None
    assert memo.peek("a") == 1 and memo.peek("c") == 3
    assert made == ["a", "b", "c"]
    with pytest.raises(ValueError):
        Memo(0)
