"""Real backing services for tests: use them if reachable, else skip (or fail on CI).

Locally a missing PostgreSQL or Redis skips the tests that need it; with ``CI`` set the
same situation is a failure, so a broken CI environment cannot pass by skipping.
"""

from __future__ import annotations

import os
import secrets
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
