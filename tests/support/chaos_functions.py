"""The chaos run's block function: every call is recorded in a side table before it returns.

``record`` inserts (value, block, pid) into ``chaos_calls`` of the worker's own database,
retrying through PostgreSQL restarts and partitions, then passes its input on. A unit
whose user code ran more than once (allowed: at least once) shows up as a value recorded
twice for one block.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

SPEC = "record=tests.support.chaos_functions:record"
DDL = (
    "CREATE TABLE IF NOT EXISTS chaos_calls ("
    " id bigserial PRIMARY KEY, value text NOT NULL, block text NOT NULL,"
    " pid integer NOT NULL, at timestamptz NOT NULL DEFAULT now())"
)
# Long enough to outlast a restart or a partition of the chaos run.
RECORD_FOR_S = 600.0

_local = threading.local()


def _dsn() -> str:
    url = make_url(os.environ["QUORUM_DATABASE_URL"])
    return (
        f"host={url.host} port={url.port or 5432} user={url.username or 'postgres'} "
        f"dbname={url.database} connect_timeout=3 tcp_user_timeout=5000 "
        "keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=2"
    )


def _insert(value: str, block: str) -> None:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(_dsn(), autocommit=True)
        _local.conn = conn
    conn.execute(
        "INSERT INTO chaos_calls (value, block, pid) VALUES (%s, %s, %s)",
        (value, block, os.getpid()),
    )


def record(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
    value = next(iter(inputs.values()), None)
    block = str(params.get("block", "?"))
    deadline = time.monotonic() + RECORD_FOR_S
    while True:
        try:
            _insert(str(value), block)
            time.sleep(float(params.get("sleep", 0)))  # the user code's own work
            return value
        except psycopg.Error:
            conn = getattr(_local, "conn", None)
            if conn is not None:
                conn.close()
            _local.conn = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
