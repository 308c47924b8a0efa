"""The named statements and expressions the wings run, portable or per dialect."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from engine.db.models import Step


class Store:
    """What a database must answer for the engine; a subclass per dialect."""

    name = ""
    # Whether other transactions' uncommitted writers can be seen (and waited for).
    sees_writers = False

    # -- per dialect ------------------------------------------------------------------

    def insert(self, table: Any) -> Any:
        """An INSERT on ``table`` that supports ``on_conflict_do_nothing``."""
        raise NotImplementedError

    def json_object(self, *pairs: Any) -> ColumnElement[Any]:
        raise NotImplementedError

    def json_array_agg(self, element: Any) -> ColumnElement[Any]:
        raise NotImplementedError

    def notify(self, s: Session, channel: str, payload: str) -> None:
        """Tell listeners of ``channel`` once the transaction commits (none by default)."""

    def try_transaction_lock(self, s: Session, name: str) -> bool:
        """Hold ``name`` until the transaction ends; False if another holds it.

        A database whose writers are serialized anyway needs no lock.
        """
        return True

    def skip_locked(self, stmt: Select[Any], of: Any) -> Select[Any]:
        """``stmt`` taking row locks that concurrent sweepers skip (where they exist)."""
        return stmt

    # -- named statements ---------------------------------------------------------------

    @functools.cached_property
    def insert_step_once(self) -> Any:
        """A step insert refused (silently) when its (run_id, step_id) is taken."""
        table: Any = Step.__table__
        return self.insert(table).on_conflict_do_nothing(index_elements=["run_id", "step_id"])
