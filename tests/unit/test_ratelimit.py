"""The per-key rate limiter: in memory, on Redis (fakeredis), failing open, and in the app."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from flask.testing import FlaskClient

from api.app import create_app
from api.ratelimit import (
    KEY_PREFIX,
    WINDOW_S,
    MemoryRateLimiter,
    RedisRateLimiter,
    create_limiter,
)
from engine.auth import issue_key
from engine.db.models import Base
from engine.db.session import Database
from engine.settings import Settings
from engine.testing import QueueDispatcher


class Clock:
    """A settable wall clock; starts 10 s into a window."""

    def __init__(self, now: float = 1_700_000_000 // WINDOW_S * WINDOW_S + 10.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


def redis_limiter(
    server: fakeredis.FakeServer, clock: Clock, limit: int = 3, **kw: Any
) -> RedisRateLimiter:
    return RedisRateLimiter(limit, fakeredis.FakeRedis(server=server), clock=clock, **kw)


@pytest.fixture(params=["memory", "redis"])
def limiter(
    request: pytest.FixtureRequest, clock: Clock, server: fakeredis.FakeServer
) -> Iterator[MemoryRateLimiter | RedisRateLimiter]:
    lim: MemoryRateLimiter | RedisRateLimiter = (
        MemoryRateLimiter(3, clock=clock)
        if request.param == "memory"
        else redis_limiter(server, clock)
    )
    yield lim
    lim.close()


# -- both backends -------------------------------------------------------------------------


def test_counts_down_then_refuses_until_the_window_ends(
    limiter: MemoryRateLimiter | RedisRateLimiter, clock: Clock
) -> None:
    decisions = [limiter.hit("qk_a") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert {d.limit for d in decisions} == {3}
    assert {d.reset_s for d in decisions} == {WINDOW_S - 10}
    assert decisions[0].headers() == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "2",
        "RateLimit-Reset": "50",
    }
    clock.now += 49.5
    refused = limiter.hit("qk_a")
    assert not refused.allowed and refused.reset_s == 1  # never 0: a client must wait
    clock.now += 0.5  # the next window
    fresh = limiter.hit("qk_a")
    assert fresh.allowed and fresh.remaining == 2 and fresh.reset_s == WINDOW_S


def test_keys_are_counted_apart(limiter: MemoryRateLimiter | RedisRateLimiter) -> None:
    for _ in range(3):
        assert limiter.hit("qk_a").allowed
    assert not limiter.hit("qk_a").allowed
    assert limiter.hit("qk_b").allowed
    assert limiter.hit("qk_b").remaining == 1


def test_reset_is_whole_seconds_rounded_up(
    limiter: MemoryRateLimiter | RedisRateLimiter, clock: Clock
) -> None:
    clock.now += 0.25  # 10.25 s into the window: 49.75 s left
    assert limiter.hit("qk_a").reset_s == 50


# -- memory --------------------------------------------------------------------------------


def test_memory_drops_old_windows(clock: Clock) -> None:
    lim = MemoryRateLimiter(3, clock=clock)
    for i in range(100):
        lim.hit(f"qk_{i}")
    assert len(lim._counts) == 100
    clock.now += WINDOW_S
    lim.hit("qk_new")
    assert lim._counts == {"qk_new": 1}


def test_memory_is_thread_safe(clock: Clock) -> None:
    import threading

    lim = MemoryRateLimiter(10_000, clock=clock)

    def hammer() -> None:
        for _ in range(500):
            lim.hit("qk_a")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lim.hit("qk_a").remaining == 10_000 - 4001


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limiter_needs_a_positive_limit(limit: int, server: fakeredis.FakeServer) -> None:
    with pytest.raises(ValueError):
        MemoryRateLimiter(limit)
    with pytest.raises(ValueError):
        RedisRateLimiter(limit, fakeredis.FakeRedis(server=server))


# -- Redis ---------------------------------------------------------------------------------


def test_redis_counters_are_shared_by_processes_and_expire(
    server: fakeredis.FakeServer, clock: Clock
) -> None:
    one, two = redis_limiter(server, clock), redis_limiter(server, clock)
    assert one.hit("qk_a").remaining == 2
    assert two.hit("qk_a").remaining == 1
    assert one.hit("qk_a").remaining == 0
    assert not two.hit("qk_a").allowed
    client = fakeredis.FakeRedis(server=server)
    (name,) = client.keys(f"{KEY_PREFIX}*")
    assert name == f"{KEY_PREFIX}qk_a:{int(clock.now // WINDOW_S)}".encode()
    assert int(client.get(name) or 0) == 4
    assert 0 < client.ttl(name) <= 2 * WINDOW_S  # never a counter that lives forever
    one.close()
    two.close()
    client.close()


class BrokenPipeline:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def incr(self, name: str) -> None:
        pass

    def expire(self, name: str, seconds: int) -> None:
        pass

    def execute(self) -> list[Any]:
        raise self.exc


class FlakyClient:
    """A Redis client whose server is down until ``up`` is set."""

    def __init__(self, server: fakeredis.FakeServer) -> None:
        self.real = fakeredis.FakeRedis(server=server)
        self.up = False
        self.calls = 0
        self.error: Exception = redis.ConnectionError("Connection refused")

    def pipeline(self, transaction: bool = True) -> Any:
        self.calls += 1
        if self.up:
            return self.real.pipeline(transaction=transaction)
        return BrokenPipeline(self.error)

    def close(self) -> None:
        self.real.close()


def test_redis_down_fails_open_counting_in_memory(
    server: fakeredis.FakeServer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="quorum.api.ratelimit")
    client = FlakyClient(server)
    lim = RedisRateLimiter(3, client, clock=clock, retry_s=3600)
    decisions = [lim.hit("qk_a") for _ in range(4)]
    # No exception, the same answers as ever (counted in this process meanwhile)...
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    # ...Redis is not asked again on every request while it is down...
    assert client.calls == 1
    # ...and one warning says so, without a traceback per request.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    lim.close()


def test_redis_is_tried_again_after_a_while(
    server: fakeredis.FakeServer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="quorum.api.ratelimit")
    client = FlakyClient(server)
    lim = RedisRateLimiter(3, client, clock=clock, retry_s=0.0)
    assert lim.hit("qk_a").allowed
    client.up = True
    d = lim.hit("qk_a")
    assert d.allowed and d.remaining == 2  # counted in Redis again (a fresh counter)
    assert client.calls == 2
    assert any("answers again" in r.getMessage() for r in caplog.records)
    lim.close()


def test_any_client_error_fails_open(server: fakeredis.FakeServer, clock: Clock) -> None:
    client = FlakyClient(server)
    lim = RedisRateLimiter(3, client, clock=clock)
    for exc in (redis.TimeoutError("t"), OSError("o"), redis.ResponseError("READONLY")):
        lim._down_until = 0.0
        client.error = exc
        assert lim.hit("qk_a").allowed
    assert client.calls == 3


def test_an_unreachable_redis_url_fails_open_quickly(clock: Clock) -> None:
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    lim = RedisRateLimiter.from_url(3, f"redis://127.0.0.1:{port}/0", clock=clock)
    t0 = time.monotonic()
    assert lim.hit("qk_a").allowed
    assert time.monotonic() - t0 < 3
    lim.close()


# -- settings ------------------------------------------------------------------------------


def test_settings_choose_the_limiter(tmp_path: Path) -> None:
    assert Settings().rate_limit_per_minute == 1200
    env = {"QUORUM_RATE_LIMIT_PER_MINUTE": "0"}
    assert Settings.from_env(env).rate_limit_per_minute == 0
    assert create_limiter(Settings(rate_limit_per_minute=0)) is None
    memory = create_limiter(Settings(rate_limit_per_minute=7))
    assert isinstance(memory, MemoryRateLimiter) and memory.limit == 7
    on_redis = create_limiter(Settings(rate_limit_per_minute=7, redis_url="redis://127.0.0.1:1/0"))
    assert isinstance(on_redis, RedisRateLimiter) and on_redis.limit == 7
    on_redis.close()
    with pytest.raises(ValueError, match="QUORUM_RATE_LIMIT_PER_MINUTE"):
        create_limiter(Settings(rate_limit_per_minute=-1))


# -- in the app ----------------------------------------------------------------------------


WORKFLOW = {
    "name": "wf",
    "blocks": [
        {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
        {"id": "end", "type": "end"},
    ],
    "edges": [{"source": "start", "source_handle": "x", "target": "end", "target_handle": "x"}],
}


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[FlaskClient, str, str]]:
    settings = Settings(data_dir=str(tmp_path), rate_limit_per_minute=3)
    db = Database(settings)
    Base.metadata.create_all(db.engine)
    with db.transaction() as s:
        one, two = issue_key(s, "acme").key, issue_key(s, "acme").key
    db.close()
    app = create_app(settings, dispatcher=QueueDispatcher())
    try:
        yield app.test_client(), one, two
    finally:
        app.extensions["quorum"].close()


def test_the_app_answers_429_with_retry_after_and_headers_on_every_answer(
    app_client: tuple[FlaskClient, str, str],
) -> None:
    client, key, other = app_client
    auth = {"Authorization": f"Bearer {key}"}
    ok = client.get("/v1/workflows", headers=auth)
    assert ok.status_code == 200
    assert ok.headers["RateLimit-Limit"] == "3"
    assert ok.headers["RateLimit-Remaining"] == "2"
    assert 1 <= int(ok.headers["RateLimit-Reset"]) <= WINDOW_S
    # Error answers count and carry the headers too.
    missing = client.get(f"/v1/workflows/{'0' * 24}", headers=auth)
    assert missing.status_code == 404 and missing.headers["RateLimit-Remaining"] == "1"
    assert client.post("/v1/workflows", headers=auth, json={}).status_code == 422
    refused = client.get("/v1/workflows", headers=auth)
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    body = refused.get_json()
    assert body["status"] == 429 and body["type"].endswith("rate-limited")
    assert body["title"] == "Too Many Requests" and "3 requests" in body["detail"]
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
    assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW_S
    # Refused before the route ran: nothing is written.
    assert client.post("/v1/workflows", headers=auth, json=WORKFLOW).status_code == 429
    # Another key (even of the same organization) has its own allowance.
    theirs = client.get("/v1/workflows", headers={"Authorization": f"Bearer {other}"})
    assert theirs.status_code == 200 and theirs.headers["RateLimit-Remaining"] == "2"
    assert theirs.get_json()["data"] == []
    # Unauthenticated answers and the operations routes are not counted.
    anonymous = client.get("/v1/workflows")
    assert anonymous.status_code == 401 and "RateLimit-Limit" not in anonymous.headers
    health = client.get("/healthz")
    assert health.status_code == 200 and "RateLimit-Limit" not in health.headers


def test_limiting_can_be_turned_off(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), rate_limit_per_minute=0)
    db = Database(settings)
    Base.metadata.create_all(db.engine)
    with db.transaction() as s:
        key = issue_key(s, "acme").key
    db.close()
    app = create_app(settings, dispatcher=QueueDispatcher())
    try:
        client = app.test_client()
        auth = {"Authorization": f"Bearer {key}"}
        assert client.post("/v1/workflows", headers=auth, json=WORKFLOW).status_code == 201
        for _ in range(5):
            r = client.get("/v1/workflows", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200 and "RateLimit-Limit" not in r.headers
    finally:
        app.extensions["quorum"].close()
