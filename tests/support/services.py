"""Real backing services for tests: use them if reachable, else skip (or fail on CI).

Locally a missing PostgreSQL or Redis skips the tests that need it; with ``CI`` set the
same situation is a failure, so a broken CI environment cannot pass by skipping.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
CONNECT_TIMEOUT_S = 2


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


def _unavailable(service: str, url: str, exc: BaseException) -> NoReturn:
    message = f"{service} is not reachable at {_redact(url)}: {type(exc).__name__}: {exc}"
    if on_ci():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


def require_postgres() -> str:
    """The admin URL of a reachable PostgreSQL (``QUORUM_TEST_DATABASE_URL``)."""
    url = os.environ.get("QUORUM_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL
    engine = create_engine(
        url, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        _unavailable("PostgreSQL", url, exc)
    finally:
        engine.dispose()
    return url


def require_redis() -> str:
    """The URL of a reachable Redis database for tests (``QUORUM_TEST_REDIS_URL``)."""
    url = os.environ.get("QUORUM_TEST_REDIS_URL") or DEFAULT_REDIS_URL
    try:
        with redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
        ) as client:
            client.ping()
    except Exception as exc:
        _unavailable("Redis", url, exc)
    return url


@contextmanager
def temp_database(admin_url: str) -> Iterator[str]:
    """Create a uniquely named PostgreSQL database, yield its URL, drop it afterwards."""
    name = f"quorum_test_{secrets.token_hex(6)}"
    admin = create_engine(
        admin_url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# Databases 1-14 of the test Redis are handed out to test modules; the leases live in
# the database of ``QUORUM_TEST_REDIS_URL`` itself (15 by default).
LEASED_DBS = range(1, 15)
LEASE_S = 3600
LEASE_WAIT_S = 300.0


@contextmanager
def lease_redis_db(redis_url: str) -> Iterator[str]:
    """Yield the URL of a Redis database no other test session holds, for as long as needed.

    Concurrent sessions on one Redis (two checkouts, CI beside a developer) would
    otherwise flush each other's queues mid-test.
    """
    url = make_url(redis_url.replace("redis://", "redis+x://"))
    base = f"redis://{url.host or '127.0.0.1'}:{url.port or 6379}"
    token = secrets.token_hex(8)
    deadline = time.monotonic() + LEASE_WAIT_S
    with redis.Redis.from_url(redis_url, socket_timeout=CONNECT_TIMEOUT_S) as leases:
        db = _take_lease(leases, token)
        while db is None:
            if time.monotonic() > deadline:
                pytest.fail("no free Redis test database: every one is leased")
            time.sleep(1.0)
            db = _take_lease(leases, token)
        try:
            yield f"{base}/{db}"
        finally:
            key = f"quorum-test:db-lease:{db}"
            if leases.get(key) == token.encode():
                leases.delete(key)


def _take_lease(leases: redis.Redis, token: str) -> int | None:
    for n in random.sample(LEASED_DBS, len(LEASED_DBS)):
        if leases.set(f"quorum-test:db-lease:{n}", token, nx=True, ex=LEASE_S):
            return n
    return None
