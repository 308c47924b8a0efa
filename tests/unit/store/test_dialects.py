"""engine.store: one store per database, answering what differs between them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.store.dialects import store_for, store_named
from engine.store.postgres import PostgresStore
from engine.store.sqlite import SqliteStore


def test_each_database_has_its_store(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with Session(engine) as s:
        assert isinstance(store_for(s), SqliteStore)
    assert isinstance(store_for(engine), SqliteStore)
    assert isinstance(store_named("postgresql"), PostgresStore)
    with pytest.raises(ValueError, match="no store"):
        store_named("oracle")


def test_the_step_insert_ignores_a_taken_path_on_both_databases() -> None:
    pg = str(store_named("postgresql").insert_step_once.compile(dialect=postgresql.dialect()))
    lite = str(store_named("sqlite").insert_step_once.compile(dialect=sqlite.dialect()))
    assert "ON CONFLICT (run_id, step_id) DO NOTHING" in pg
    assert "ON CONFLICT (run_id, step_id) DO NOTHING" in lite


def test_sqlite_needs_no_lock(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with Session(engine) as s:
        store = store_for(s)
        assert store.try_transaction_lock(s, "any") is True
        store.notify(s, "channel", "payload")  # nothing to notify: no error either
    assert not store.sees_writers and store_named("postgresql").sees_writers
