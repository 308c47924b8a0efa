"""The store on SQLite (the embedded default: one writer at a time, no notifications)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, func
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement

from engine.store.base import Store


class SqliteStore(Store):
    name = "sqlite"

    def insert(self, table: Any) -> Any:
        return sqlite_insert(table)

    def json_object(self, *pairs: Any) -> ColumnElement[Any]:
        return func.json_object(*pairs)

    def json_array_agg(self, element: Any) -> ColumnElement[Any]:
        return func.json_group_array(element)

    def sql_id(self, salt: Any) -> ColumnElement[Any]:
        seconds = func.printf("%08x", func.cast(func.strftime("%s", "now"), Integer()))
        return seconds.concat(func.lower(func.hex(func.randomblob(8))))
