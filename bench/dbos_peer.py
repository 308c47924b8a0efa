"""The DBOS peer: DBOS Transact (the ``bench`` extra) on the same PostgreSQL server.

Its system database is a fresh database of its own (``quorum_bench_<hex>_dbos``), migrated
with ``DBOS.migrate``. Work is submitted from this process through ``DBOSClient`` (the way
a program outside a DBOS application starts its workflows) and run by 2 worker processes
(:mod:`bench.dbos_app`), like the engine's and raw Celery's 2 pool processes; steps are
no-ops, as theirs are.

A DBOS worker finds work by polling its queue, not by being told, so an idle DBOS worker
still queries PostgreSQL several times per polling interval. Its workers therefore run
only for their own samples (started, warmed up and stopped around each, untimed), so that
they never load the shared cores while the engine or raw Celery is measured.

Settings, chosen for DBOS's best on this machine (see README, Performance):

* units (S1, S1-API): ``worker_concurrency`` and ``polling_interval_sec`` of the queue
  (:data:`UNITS`), and :data:`ENQUEUE_THREADS` client threads enqueuing;
* chain (S2): a queue polled every :data:`CHAIN` ``polling_interval_sec``;
* fork (S6): ``DBOSClient.fork_workflow`` from the parent's last step, so that every
  earlier step's checkpoint is copied; no worker runs, and each fork is cancelled after
  it is timed so that nothing ever replays it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from sqlalchemy import create_engine, text

from bench.context import Ctx
from bench.dbos_app import APP_NAME, READY, STEPS, UNIT
from bench.env import BenchError, Proc, log_contains, python, wait_for

PROCESSES = 2
WARM_UNITS = 50
FAILED = ("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


@dataclass(frozen=True, kw_only=True)
class QueueSettings:
    name: str
    worker_concurrency: int | None
    polling_interval_sec: float


UNITS = QueueSettings(name="bench-units", worker_concurrency=64, polling_interval_sec=0.02)
CHAIN = QueueSettings(name="bench-chain", worker_concurrency=1, polling_interval_sec=0.01)
ENQUEUE_THREADS = 16


def label() -> str:
    return f"DBOS {version('dbos')}"


def settings_note() -> str:
    return (
        f"{label()}: {PROCESSES} worker processes; units queue worker_concurrency "
        f"{UNITS.worker_concurrency}, polling every {UNITS.polling_interval_sec * 1000:g} ms, "
        f"{ENQUEUE_THREADS} client threads enqueuing; chain queue polled every "
        f"{CHAIN.polling_interval_sec * 1000:g} ms; workers run only for DBOS's own samples"
    )


class DbosPeer:
    """DBOS's system database, a client in this process, and its workers on demand."""

    def __init__(self, ctx: Ctx) -> None:
        from dbos import DBOS, DBOSClient

        self.ctx = ctx
        self.url = ctx.world.create_database("dbos")
        DBOS.migrate(self.url)
        self.client = DBOSClient(
            system_database_url=self.url,
            application_name=APP_NAME,
            system_database_pool_size=ENQUEUE_THREADS + 2,
        )
        for q in (UNITS, CHAIN):
            self.client.register_queue(
                q.name,
                worker_concurrency=q.worker_concurrency,
                polling_interval_sec=q.polling_interval_sec,
            )
        self.sql = create_engine(self.url, pool_size=1, max_overflow=0)

    def close(self) -> None:
        self.client.destroy()
        self.sql.dispose()

    @contextlib.contextmanager
    def workers(self, queue: QueueSettings) -> Iterator[list[Proc]]:
        w = self.ctx.world
        run = uuid.uuid4().hex[:6]
        procs = [
            w.start(
                f"dbos-{i}",
                [
                    python(),
                    "-m",
                    "bench.dbos_app",
                    "--url",
                    self.url,
                    "--executor",
                    f"w{i}-{run}",
                    "--queue",
                    queue.name,
                ],
                env=w.env(),
                ready=lambda _: True,  # both start at once; readiness is awaited below
            )
            for i in range(PROCESSES)
        ]
        try:
            wait_for(
                lambda: all(_ready(p) for p in procs),
                timeout=60,
                interval=0.05,
                what="DBOS workers ready",
            )
            yield procs
        finally:
            for proc in procs:
                w.stop(proc)

    # -- measurements -------------------------------------------------------------------

    def units(self, n: int) -> float:
        """S1 / S1-API: n one-step workflows enqueued, until all done; workflows per second
        from the first enqueue to the last ``completed_at``."""
        with self.workers(UNITS):
            self._batch(WARM_UNITS)
            return self._batch(n)

    def chain(self, length: int) -> float:
        """S2: one workflow of ``length`` no-op steps; ms from enqueue to ``completed_at``."""
        with self.workers(CHAIN):
            self._run(STEPS, length)
            t0, end = self._run(STEPS, length)
        return (end - t0) * 1000

    def seed_steps(self, n: int) -> str:
        """S6's parent: a finished workflow of n steps, run for real by the workers."""
        with self.workers(CHAIN):
            wf_id = f"seed{n}-{uuid.uuid4().hex[:8]}"
            self._run(STEPS, n, wf_id=wf_id, timeout=120 + n / 20)
        steps = self._scalar(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = :id", id=wf_id
        )
        if steps != n:
            raise BenchError(f"DBOS seed workflow {wf_id} recorded {steps} steps, not {n}")
        return wf_id

    def fork(self, wf_id: str, start_step: int) -> tuple[float, str]:
        """S6: ``fork_workflow`` from ``start_step``; (ms, the fork's id). The fork is then
        cancelled (untimed), so that no worker ever replays it."""
        t0 = time.perf_counter()
        handle = self.client.fork_workflow(wf_id, start_step)
        ms = (time.perf_counter() - t0) * 1000
        fork_id = handle.get_workflow_id()
        self.client.cancel_workflow(fork_id)
        return ms, fork_id

    def copied_steps(self, fork_id: str) -> int:
        return self._scalar(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = :id", id=fork_id
        )

    # -- helpers ------------------------------------------------------------------------

    def _enqueue(self, name: str, queue: str, wf_id: str, *args: Any) -> None:
        self.client.enqueue(
            {"queue_name": queue, "workflow_name": name, "workflow_id": wf_id}, *args
        )

    def _run(
        self, name: str, *args: Any, wf_id: str | None = None, timeout: float = 120
    ) -> tuple[float, float]:
        """Enqueue one workflow on the chain queue and wait; (enqueue time, completed_at)."""
        wf_id = wf_id or f"run-{uuid.uuid4().hex}"
        t0 = time.time()
        self._enqueue(name, CHAIN.name, wf_id, *args)
        ok, _, end = wait_for(
            lambda: self._progress(wf_id, exact=True),
            timeout=timeout,
            interval=0.02,
            what=f"DBOS workflow {wf_id}",
        )
        if ok != 1 or end is None:
            raise BenchError(f"DBOS workflow {wf_id} did not succeed")
        return t0, end

    def _batch(self, n: int) -> float:
        prefix = f"b{uuid.uuid4().hex[:10]}-"
        errors: list[BaseException] = []

        def enqueue(start: int) -> None:
            try:
                for i in range(start, n, ENQUEUE_THREADS):
                    self._enqueue(UNIT, UNITS.name, f"{prefix}{i}")
            except BaseException as exc:  # reported by the waiting thread
                errors.append(exc)

        threads = [
            threading.Thread(target=enqueue, args=(k,), daemon=True) for k in range(ENQUEUE_THREADS)
        ]
        t0 = time.time()
        for t in threads:
            t.start()

        def done() -> Any:
            if errors:
                raise BenchError(f"DBOS enqueue failed: {errors[0]!r}")
            ok, failed, end = self._progress(prefix)
            return (ok, failed, end) if ok + failed == n else None

        _, failed, end = wait_for(done, timeout=60 + n / 10, interval=0.5, what=f"{n} DBOS units")
        for t in threads:
            t.join()
        if failed or end is None:
            raise BenchError(f"{failed} of {n} DBOS units failed")
        return n / (end - t0)

    def _progress(self, key: str, *, exact: bool = False) -> Any:
        """(succeeded, failed, last completed_at in s) of one workflow, or of an id prefix;
        None while the one workflow is unfinished."""
        where = "workflow_uuid = :key" if exact else "workflow_uuid LIKE :key"
        with self.sql.connect() as conn:
            ok, failed, last = conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE status = 'SUCCESS'), "
                    "count(*) FILTER (WHERE status = ANY(:failed)), max(completed_at) "
                    f"FROM dbos.workflow_status WHERE {where}"
                ),
                {"key": key if exact else key + "%", "failed": list(FAILED)},
            ).one()
        if exact and ok + failed == 0:
            return None
        return int(ok), int(failed), (last / 1000 if last is not None else None)

    def _scalar(self, sql: str, **params: Any) -> int:
        with self.sql.connect() as conn:
            return int(conn.execute(text(sql), params).scalar_one())


def _ready(proc: Proc) -> bool:
    if not proc.alive():
        raise BenchError(f"{proc.name} exited:\n{proc.log_tail()}")
    return log_contains(READY)(proc)
