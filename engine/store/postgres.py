"""The store on PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from engine.store.base import Store


class PostgresStore(Store):
    name = "postgresql"
    sees_writers = True

    def insert(self, table: Any) -> Any:
        return pg_insert(table)

    def json_object(self, *pairs: Any) -> ColumnElement[Any]:
        return func.jsonb_build_object(*pairs)

    def json_array_agg(self, element: Any) -> ColumnElement[Any]:
        return func.jsonb_agg(element)

    def notify(self, s: Session, channel: str, payload: str) -> None:
        # Delivered when (and only if) the transaction commits.
        s.execute(select(func.pg_notify(channel, payload)))

    def try_transaction_lock(self, s: Session, name: str) -> bool:
        lock = func.pg_try_advisory_xact_lock(func.hashtextextended(name, 0))
        return bool(s.scalar(select(lock)))

    def skip_locked(self, stmt: Select[Any], of: Any) -> Select[Any]:
        return stmt.with_for_update(skip_locked=True, of=of)
