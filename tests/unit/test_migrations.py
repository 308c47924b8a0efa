"""The Alembic migrations reproduce the ORM model exactly (SQLite, the embedded default)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from engine.db import migrate
from engine.db.models import Base
from engine.db.session import make_engine
from tests.support.old_rows import check_migration_0006


def schema_diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_matches_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'quorum.sqlite3'}"
    assert migrate.current(url) is None

    migrate.upgrade(url)

    assert schema_diff(url) == []
    head = migrate.head()
    assert head is not None
    assert migrate.current(url) == head


def test_upgrade_is_idempotent_and_reversible(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'quorum.sqlite3'}"
    migrate.upgrade(url)
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head()

    command.downgrade(migrate.alembic_config(url), "base")
    assert migrate.current(url) is None
    assert table_names(url) == {"alembic_version"}

    migrate.upgrade(url)
    assert table_names(url) >= set(Base.metadata.tables)
    assert schema_diff(url) == []


def test_foreign_keys_are_enforced_after_upgrade(tmp_path: Path) -> None:
    # The migration turns SQLite's foreign key enforcement off for batch operations;
    # application connections must still get it.
    url = f"sqlite:///{tmp_path / 'quorum.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_0006_rewrites_stored_events_and_iterations_and_back(tmp_path: Path) -> None:
    check_migration_0006(f"sqlite:///{tmp_path / 'quorum.sqlite3'}")


def test_0010_renames_consensus_attempts_to_samples_keeping_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'quorum.sqlite3'}"
    config = migrate.alembic_config(url)
    command.upgrade(config, "0009_lineage")
    engine = make_engine(url)
    row = (
        'INSERT INTO consensus_attempts (id, owner_kind, owner_id, owner_attempt, "index",'
        " state, attempt, created_at) VALUES ('a1', 'step', 's1', 1, 2, 'queued', 0,"
        " '2026-01-01 00:00:00')"
    )
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(row)
        command.upgrade(config, "0010_samples")
        assert "consensus_samples" in table_names(url)
        assert "consensus_attempts" not in table_names(url)
        with engine.connect() as conn:
            kept = conn.exec_driver_sql('SELECT id, "index" FROM consensus_samples').all()
        assert [tuple(r) for r in kept] == [("a1", 2)]
        command.downgrade(config, "0009_lineage")
        assert "consensus_attempts" in table_names(url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM consensus_attempts").scalar() == 1
    finally:
        engine.dispose()
