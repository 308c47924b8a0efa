"""Pooled PostgreSQL connections: pinged only after sitting idle, replaced when dead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from engine.db import session as db_session
from engine.db.session import make_engine
from tests.support.services import require_postgres, temp_database

pytestmark = pytest.mark.integration


@pytest.fixture
def engine() -> Iterator[Engine]:
    with temp_database(require_postgres()) as url:
        eng = make_engine(url, pool_size=1)
        try:
            yield eng
        finally:
            eng.dispose()


def _counting_pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    real = engine.dialect.do_ping

    def ping(dbapi_connection: Any) -> bool:
        pings.append(1)
        return bool(real(dbapi_connection))

    monkeypatch.setattr(engine.dialect, "do_ping", ping)
    return pings


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_used_a_moment_ago_is_not_pinged(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _counting_pings(engine, monkeypatch)
    first = _backend_pid(engine)
    assert _backend_pid(engine) == first  # the same pooled connection, reused
    assert pings == []


def test_a_connection_killed_while_idle_is_pinged_and_replaced(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _counting_pings(engine, monkeypatch)
    dead = _backend_pid(engine)
    # The pool holds that one connection, now idle: terminate it from a second engine.
    killer = make_engine(str(engine.url.render_as_string(hide_password=False)), pool_size=1)
    try:
        with killer.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead})
            conn.commit()
    finally:
        killer.dispose()
    monkeypatch.setattr(db_session, "PING_IDLE_S", 0.0)  # as if it had sat idle for long
    fresh = _backend_pid(engine)
    assert fresh != dead
    assert pings  # the dead one was found by the ping, not by a failed statement
