"""Rate limiting per API key: a fixed window of one minute, counted by key prefix.

With ``QUORUM_REDIS_URL`` set the counters live in Redis (``INCR`` and ``EXPIRE`` in one
``MULTI``/``EXEC`` transaction), so every API process of a deployment shares them. Without
it they live in the memory of each API process: a deployment of N processes (gunicorn
workers, hosts) then lets a key make up to N times the limit.

Redis being unreachable never fails a request: the limiter logs a warning and counts in
the process's memory until Redis answers again (it retries at most every few seconds, so
an outage does not add a connect timeout to every request).

Every answer to an authenticated ``/v1`` request carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the window ends); a request
over the limit answers ``429`` with ``Retry-After``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Flask, Response, g

from api.problems import ApiProblem
from engine.settings import Settings

log = logging.getLogger("quorum.api.ratelimit")

WINDOW_S = 60
KEY_PREFIX = "quorum:ratelimit:"
# How long after a Redis failure the limiter counts in memory before it tries Redis again.
REDIS_RETRY_S = 5.0
REDIS_TIMEOUT_S = 0.5

Clock = Callable[[], float]


@dataclass(frozen=True, kw_only=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the current window ends (at least 1)

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }


class RateLimiter(Protocol):
    limit: int

    def hit(self, key: str) -> Decision:
        """Count one request of ``key`` and say whether it may go on."""
        ...

    def close(self) -> None: ...


def _window(now: float) -> tuple[int, int]:
    """(the window's number, whole seconds until it ends, at least 1)."""
    window = int(now // WINDOW_S)
    reset = max(1, math.ceil((window + 1) * WINDOW_S - now))
    return window, reset


def _decide(limit: int, count: int, reset_s: int) -> Decision:
    return Decision(
        allowed=count <= limit, limit=limit, remaining=max(0, limit - count), reset_s=reset_s
    )


class MemoryRateLimiter:
    """Counters in this process's memory (one API process; see the module docstring)."""

    def __init__(self, limit: int, *, clock: Clock = time.time) -> None:
        if limit < 1:
            raise ValueError("the limit must be at least 1 request per minute")
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._window = -1
        self._counts: dict[str, int] = {}

    def hit(self, key: str) -> Decision:
        window, reset = _window(self._clock())
        with self._lock:
            if window != self._window:
                # Every counter belongs to an older window: drop them all (bounded memory).
                self._window = window
                self._counts.clear()
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
        return _decide(self.limit, count, reset)

    def close(self) -> None:
        pass


class RedisRateLimiter:
    """Counters in Redis, shared by every API process; memory while Redis is unreachable."""

    def __init__(
        self,
        limit: int,
        client: Any,
        *,
        clock: Clock = time.time,
        retry_s: float = REDIS_RETRY_S,
    ) -> None:
        if limit < 1:
            raise ValueError("the limit must be at least 1 request per minute")
        self.limit = limit
        self.client = client
        self._clock = clock
        self._retry_s = retry_s
        self._fallback = MemoryRateLimiter(limit, clock=clock)
        self._lock = threading.Lock()
        self._down_until = 0.0  # monotonic; Redis is not tried again before this
        self._degraded = False

    @classmethod
    def from_url(cls, limit: int, url: str, **kwargs: Any) -> RedisRateLimiter:
        import redis

        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            health_check_interval=30,
        )
        return cls(limit, client, **kwargs)

    def hit(self, key: str) -> Decision:
        if time.monotonic() < self._down_until:
            return self._fallback.hit(key)
        now = self._clock()
        window, reset = _window(now)
        name = f"{KEY_PREFIX}{key}:{window}"
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(name)
            # Outlives its window (and clock skew between API hosts), then goes by itself.
            pipe.expire(name, 2 * WINDOW_S)
            count, _ = pipe.execute()
        except Exception as exc:
            # Fail open: a rate limiter must never be the reason a request fails.
            self._redis_failed(exc)
            return self._fallback.hit(key)
        if self._degraded:
            with self._lock:
                if self._degraded:
                    self._degraded = False
                    log.warning("rate limiter: Redis answers again; counting in Redis")
        return _decide(self.limit, int(count), reset)

    def _redis_failed(self, exc: Exception) -> None:
        with self._lock:
            self._down_until = time.monotonic() + self._retry_s
            first = not self._degraded
            self._degraded = True
        if first:
            log.warning(
                "rate limiter: Redis is unreachable (%s); counting in this process's memory"
                " until it answers again",
                type(exc).__name__,
            )

    def close(self) -> None:
        self.client.close()


def create_limiter(settings: Settings) -> RateLimiter | None:
    """The limiter the settings ask for, or None when ``rate_limit_per_minute`` is 0."""
    limit = settings.rate_limit_per_minute
    if limit < 0:
        raise ValueError(f"QUORUM_RATE_LIMIT_PER_MINUTE={limit} must be 0 (off) or positive")
    if limit == 0:
        return None
    if settings.redis_url:
        return RedisRateLimiter.from_url(limit, settings.redis_url)
    return MemoryRateLimiter(limit)


def enforce(limiter: RateLimiter | None) -> None:
    """Count the authenticated request against its key; 429 when over the limit."""
    if limiter is None:
        return
    decision = limiter.hit(g.principal.key_prefix)
    g.rate_limit = decision
    if not decision.allowed:
        raise ApiProblem(
            429,
            f"this API key made more than {decision.limit} requests in a minute;"
            f" retry in {decision.reset_s} s",
            headers={"Retry-After": str(decision.reset_s)},
        )


def install_rate_limit_headers(app: Flask) -> None:
    @app.after_request
    def _rate_limit_headers(resp: Response) -> Response:
        decision: Decision | None = g.get("rate_limit")
        if decision is not None:
            for k, v in decision.headers().items():
                resp.headers[k] = v
        return resp
