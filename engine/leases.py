"""Heartbeat leases: a worker keeps renewing the rows it is working on, and only those.

A claim gives its row a lease (``leased_until``, ``QUORUM_LEASE_S`` ahead). While the
worker runs the row's block, a background thread of its process renews the lease every
third of that time, fenced on the claim's attempt. A row whose lease ran out is therefore
no longer being worked on, whatever the reason: the host vanished or is cut off from the
database, the process died, or it gave the row up without settling it (the database went
away and the task's retries ran out). Claims and the outbox's orphan sweep take such a row
over (``engine.claims``, ``engine.outbox``), and the fence discards a late settle from the
old holder. So the lease can be short (tens of seconds) without taking a long block away
from a healthy worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, update

from engine.clock import as_utc, utcnow
from engine.db.models import BlockExecution, ConsensusSample, Step
from engine.db.session import Database
from engine.lifecycle import StepState

log = logging.getLogger("quorum.leases")

MODELS: dict[str, Any] = {
    Step.__tablename__: Step,
    BlockExecution.__tablename__: BlockExecution,
    ConsensusSample.__tablename__: ConsensusSample,
}


def lease_expired(row: Any, now: datetime, lease: timedelta) -> bool:
    """Whether a running row's lease ran out (rows claimed before leases: by start time)."""
    until = as_utc(getattr(row, "leased_until", None))
    if until is None:
        started = as_utc(row.started_at)
        until = (started or now) + lease
    return until < now


class LeaseKeeper:
    """The rows this process holds, and the thread that renews their leases."""

    def __init__(self, db: Database, *, worker: str, lease_s: float) -> None:
        self.db = db
        self.worker = worker
        self.lease = timedelta(seconds=lease_s)
        self._held: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what is held ---------------------------------------------------------------

    def hold(self, model: Any, row_id: str, attempt: int) -> None:
        with self._lock:
            self._held[(model.__tablename__, row_id)] = attempt

    def keep_only(self, keep: Iterable[tuple[Any, str]] = ()) -> None:
        """Stop renewing every row but ``keep``: this process is done with them."""
        wanted = {(model.__tablename__, row_id) for model, row_id in keep}
        with self._lock:
            self._held = {k: v for k, v in self._held.items() if k in wanted}

    def held(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._held)

    # -- renewing -------------------------------------------------------------------

    def renew(self, now: datetime | None = None) -> int:
        """Push every held row's lease ahead; return how many rows were renewed."""
        held = self.held()
        if not held:
            return 0
        until = (now or utcnow()) + self.lease
        renewed = 0
        with self.db.autocommit() as s:
            for (table, row_id), attempt in held.items():
                result = s.execute(
                    _renew_statement(table),
                    {
                        "r_id": row_id,
                        "r_attempt": attempt,
                        "r_worker": self.worker,
                        "r_until": until,
                    },
                )
                renewed += int(getattr(result, "rowcount", 0) or 0)
            s.commit()
        return renewed

    def start(self) -> None:
        """Renew in a daemon thread every third of the lease until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="quorum-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        every = max(0.5, self.lease.total_seconds() / 3)
        while not self._stop.wait(every):
            try:
                self.renew()
            except Exception:
                # The database is away: the leases run out, and whoever takes a row over
                # fences this process's late settle. Keep trying until it is back.
                log.warning("lease renewal failed", exc_info=True)


def _renew_statement(table: str) -> Any:
    model = MODELS[table]
    return (
        update(model)
        .where(
            model.id == bindparam("r_id"),
            model.attempt == bindparam("r_attempt"),
            model.worker == bindparam("r_worker"),
            model.state == StepState.RUNNING,
        )
        .values(leased_until=bindparam("r_until"))
    )
