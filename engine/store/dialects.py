"""The store of the database a session (or engine) talks to."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from engine.store.base import Store
from engine.store.postgres import PostgresStore
from engine.store.sqlite import SqliteStore

_STORES: dict[str, Store] = {s.name: s for s in (PostgresStore(), SqliteStore())}


def store_named(dialect: str) -> Store:
    try:
        return _STORES[dialect]
    except KeyError:
        raise ValueError(f"no store for the {dialect!r} database") from None


def store_for(bind: Session | Any) -> Store:
    """``bind``: a session, an engine or a connection."""
    if isinstance(bind, Session):
        bind = bind.get_bind()
    return store_named(bind.dialect.name)
