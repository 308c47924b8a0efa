"""Alembic environment for Quorum's schema (PostgreSQL and SQLite).

The database URL comes from the Alembic config's ``sqlalchemy.url`` (set by
:mod:`engine.db.migrate`). The engine is built by :func:`engine.db.session.make_engine`, so
SQLite gets the same pragmas and ``BEGIN IMMEDIATE`` transactions as the application: the
whole upgrade runs in one transaction holding the write lock. On PostgreSQL a transaction
level advisory lock serializes concurrent upgrades (several processes starting at once).
"""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import JSON, Connection, text
from sqlalchemy.dialects.postgresql import JSONB

from engine.db.models import Base
from engine.db.session import make_engine

config = context.config
target_metadata = Base.metadata

# Arbitrary constant shared by every process migrating the same PostgreSQL database.
_PG_LOCK_KEY = 0x51_55_4F_52_55_4D  # "QUORUM"


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    # Alembic renders the JSONB variant's ``astext_type=Text()`` without the ``sa.``
    # prefix, which does not import; spell the models' Json type out instead.
    if type_ == "type" and isinstance(obj, JSON) and not isinstance(obj, JSONB):
        variant = obj._variant_mapping.get("postgresql")
        if isinstance(variant, JSONB):
            autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
            return 'sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")'
    return False


_COMMON: dict[str, Any] = {
    "target_metadata": target_metadata,
    # Batch mode lets SQLite alter tables (by copy and rename); on PostgreSQL batch
    # operations run as plain ALTERs, so one migration script serves both.
    "render_as_batch": True,
    "compare_type": True,
    "render_item": _render_item,
}


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic config has no sqlalchemy.url")
    return url


def run_migrations_offline() -> None:
    context.configure(url=_url(), literal_binds=True, **_COMMON)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    # SQLite supports transactional DDL once pysqlite's own transaction handling is off,
    # which make_engine does; Alembic assumes otherwise unless told.
    context.configure(connection=connection, transactional_ddl=True, **_COMMON)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            context.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})"))
        context.run_migrations()


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    # Batch operations recreate tables; with foreign keys enforced, dropping the old copy
    # of a referenced table would fail or cascade. The pragma is a no-op inside a
    # transaction, so it is set on the driver connection outside of one.
    raw = connection.connection.driver_connection
    assert raw is not None
    if on:
        violations = raw.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            raise RuntimeError(f"migration left foreign key violations: {violations[:5]}")
    raw.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def run_migrations_online() -> None:
    # A caller may hand over its own connection (and owns its transaction and pragmas).
    supplied = config.attributes.get("connection")
    if isinstance(supplied, Connection):
        _run(supplied)
        return
    engine = make_engine(_url(), pool_size=1)
    try:
        with engine.connect() as connection:
            is_sqlite = connection.dialect.name == "sqlite"
            if is_sqlite:
                _sqlite_foreign_keys(connection, on=False)
            _run(connection)
            if is_sqlite:
                _sqlite_foreign_keys(connection, on=True)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
