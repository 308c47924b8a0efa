"""Which database errors mean "the database is away" and which mean "it refused a value".

The two call for opposite answers. A lost connection, an administrator's shutdown or a
pool with no free connection is transient: the message is retried later and nothing is
settled. A value the database refuses (``Infinity`` or a NUL character in ``jsonb``, a
string longer than its column) is refused again on every retry: retrying it only runs the
block again and again, so the block fails at once instead (``engine.refusals``).
"""

from __future__ import annotations

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    PendingRollbackError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout


class DatabaseAway(Exception):
    """The database could not be reached or went away mid-way: retry later, nothing settled."""


# Connection-level errors. psycopg reports a lost server, an admin shutdown, a refused
# connection, a serialization failure or a deadlock as OperationalError (SQLite a locked
# database): all transient. A session whose connection broke mid-transaction raises
# PendingRollbackError on its next use; a pool with no free connection, TimeoutError.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeout,
    PendingRollbackError,
    DatabaseAway,
)


def database_away(exc: BaseException) -> bool:
    """True for an error worth retrying later: the connection, not the statement, failed."""
    for e in _chain(exc):
        if isinstance(e, CONNECTION_LOST):
            return True
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return True
    return False


def refused_value(exc: BaseException) -> str | None:
    """What the database refused to store, when ``exc`` is such a refusal; else None."""
    for e in _chain(exc):
        if isinstance(e, DataError):
            orig = e.orig if e.orig is not None else e
            first = str(orig).strip().splitlines()
            return first[0] if first else type(orig).__name__
        if isinstance(e, UnicodeEncodeError):
            # psycopg encodes text before sending it: a lone surrogate never reaches the server.
            return f"a string the database cannot encode ({e.reason})"
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised during: after a refused statement, PostgreSQL fails
    every further statement of the transaction ("current transaction is aborted"), and a
    ``finally`` that writes raises that instead, with the refusal as its context."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found and len(found) < 8:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found
