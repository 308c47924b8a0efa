"""Database engines and transactions for PostgreSQL (production) and SQLite (embedded)."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from engine.settings import Settings


def make_engine(url: str, *, pool_size: int = 5, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    engine = create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
    )
    _ping_when_idle(engine)
    return engine


# A connection that sat in the pool this long is pinged before use.
PING_IDLE_S = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only if it sat idle for a while.

    A connection killed under us (PostgreSQL restarted, backend terminated, a firewall
    dropping idle sockets) is replaced instead of failing the next request or task. A
    ping on every checkout (``pool_pre_ping``) was a quarter of a worker's time on short
    blocks: one extra round trip per transaction. A connection used a moment ago is
    almost surely alive, and if it died in between, the statement fails as a disconnect,
    SQLAlchemy drops the pool's older connections, and the task is retried.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        record.info["quorum_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("quorum_idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("ping failed") from exc
        if not alive:
            raise DisconnectionError("ping failed")


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and would let two writers read
    # the same run before either locks it; BEGIN IMMEDIATE takes the write lock up front,
    # which is what "lock the run row" means on SQLite.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine and its session factory, built once per process from the settings."""

    def __init__(self, settings: Settings, *, pool_size: int = 5) -> None:
        self.settings = settings
        self.url = settings.effective_database_url
        self.engine = make_engine(self.url, pool_size=pool_size)
        self._pool_size = pool_size
        self._lazy: Engine | None = None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        from engine.events import install

        install(self.sessions)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def autocommit(self, *, durable: bool = True) -> Iterator[Session]:
        """A session on one connection for a short sequence of single-statement writes.

        On PostgreSQL every statement commits by itself: no BEGIN and COMMIT round trips.
        Nothing is lost by that for a sequence whose writes are each one statement: under
        READ COMMITTED (the default) every statement of a transaction reads its own
        snapshot anyway. The caller still calls ``commit()`` wherever its writes must be
        durable (a no-op here), because on SQLite (the embedded default) the session is
        transactional as everywhere else and that is where it commits. What is not
        committed when the block ends is rolled back.

        ``durable=False`` is for writes whose loss in a database crash is harmless, such as
        a claim (the row goes back to queued and is published again; a later durable
        commit flushes it anyway): they commit without waiting for the disk.
        """
        engine = self.engine if durable or self.is_sqlite else self._lazy_engine()
        with engine.connect() as conn:
            if not self.is_sqlite:
                conn.execution_options(isolation_level="AUTOCOMMIT")
            with Session(bind=conn, expire_on_commit=False, autoflush=False) as session:
                yield session

    def _lazy_engine(self) -> Engine:
        if self._lazy is None:
            engine = make_engine(self.url, pool_size=max(1, self._pool_size // 2))

            @event.listens_for(engine, "connect")
            def _no_disk_wait(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("SET synchronous_commit TO off")
                cursor.close()
                dbapi_connection.commit()

            self._lazy = engine
        return self._lazy

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def after_fork(self) -> None:
        # A forked child must never reuse the parent's sockets.
        self.engine.dispose(close=False)
        if self._lazy is not None:
            self._lazy.dispose(close=False)

    def close(self) -> None:
        self.engine.dispose()
        if self._lazy is not None:
            self._lazy.dispose()


def lock_row(session: Session, model: Any, row_id: str, *, options: Sequence[Any] = ()) -> Any:
    """Read a row under a write lock held to the end of the transaction.

    PostgreSQL takes a row lock; on SQLite the transaction already holds the database's
    write lock (BEGIN IMMEDIATE), which is stronger.
    """
    locking = session.get_bind().dialect.name != "sqlite"
    stmt = _lock_statement(model, tuple(options), locking)
    return session.execute(stmt, {"lock_id": row_id}).scalar_one_or_none()


@functools.lru_cache(maxsize=64)
def _lock_statement(model: Any, options: tuple[Any, ...], locking: bool) -> Any:
    # Built once per shape: on the hot path, building the statement cost more than running it.
    stmt = select(model).where(model.id == bindparam("lock_id")).options(*options)
    return stmt.with_for_update() if locking else stmt
