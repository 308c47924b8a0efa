"""S4 and S8: the orchestrator in this process, on the real database (and broker for S4).

S4 times a ``for_each`` step of 1,000 items from its claim to its 1,000 iteration
messages being on the broker (claim, insert of the iteration rows, commit, publish), and
the publish part alone, against 1,000 ``apply_async`` calls in a loop. Both publish to a
queue no worker consumes (purged after each sample), so only publishing is measured.

S8 counts database commits (SQLAlchemy ``commit`` events) and SQL statements
(``before_cursor_execute``) while the orchestrator runs one block execution end to end
(claim, execute, settle); also per step of a chain run, for the S2 analysis.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any

from celery import Celery
from sqlalchemy import Engine, event

from bench.baseline import NOOP, create_baseline
from bench.context import Ctx, interleave
from bench.env import BenchError
from bench.inline import drain, handle, make_orchestrator
from bench.report import Row, pair_ratio
from bench.seam import CeleryDispatcher, Work, create_celery


class TimedDispatcher:
    """The real dispatcher, timing every publish since the last ``reset``."""

    def __init__(self, inner: CeleryDispatcher) -> None:
        self.inner = inner
        self.ms = 0.0
        self.count = 0

    def reset(self) -> None:
        self.ms, self.count = 0.0, 0

    def dispatch(self, work: Sequence[Work]) -> None:
        t0 = time.perf_counter()
        self.inner.dispatch(work)
        self.ms += (time.perf_counter() - t0) * 1000
        self.count += len(work)

    def revoke(self, work: Sequence[Work]) -> None:
        self.inner.revoke(work)


def purge(app: Celery, queue: str) -> int:
    with app.connection_for_write() as conn:
        return int(conn.default_channel.queue_purge(queue) or 0)


def run_s4(ctx: Ctx) -> None:
    w = ctx.world
    n = ctx.sizes.s4_items
    eng = ctx.engine
    # Only the for_each step: no successor run in-process after it (the iterations are what
    # is being published), whatever QUORUM_INLINE_SUCCESSORS says elsewhere.
    settings = w.settings(w.sink_queue, QUORUM_INLINE_SUCCESSORS="0")
    celery = create_celery(settings)
    timed = TimedDispatcher(CeleryDispatcher(celery))
    orch = make_orchestrator(settings, eng.db, timed)
    base = create_baseline(w.broker_url, w.sink_queue)
    noop = base.tasks[NOOP]
    publish_ms: list[float] = []
    try:

        def engine() -> float:
            # Untimed: a run whose for_each step is queued with n items.
            eng.start_run(ctx.seed.foreach_workflow, {"items": list(range(n))})
            handle(eng.orch, eng.rec.work.pop(0))  # the start step, in-process
            each = eng.rec.work.pop(0)
            eng.rec.work.clear()
            timed.reset()
            t0 = time.perf_counter()
            orch.run_step(each.id)
            total = (time.perf_counter() - t0) * 1000
            if timed.count != n:
                raise BenchError(f"the fan-out published {timed.count} messages, not {n}")
            publish_ms.append(timed.ms)
            got = purge(celery, w.sink_queue)
            if got != n:
                raise BenchError(f"{got} messages on the queue after a fan-out of {n}")
            return total

        def baseline() -> float:
            t0 = time.perf_counter()
            for i in range(n):
                noop.apply_async(args=(i,))
            total = (time.perf_counter() - t0) * 1000
            got = purge(celery, w.sink_queue)
            if got != n:
                raise BenchError(f"{got} messages on the queue after {n} apply_async calls")
            return total

        engine()  # warm-up (connections, caches)
        baseline()
        publish_ms.clear()
        a, b = interleave(ctx, "S4", ctx.sizes.light_pairs, engine, baseline)
        speedup = pair_ratio(a, b, lambda e, x: x / e)
        ctx.add(
            Row(
                scenario="S4",
                what=f"for_each fan-out of {n:,}: claim+insert+publish",
                unit="ms",
                engine=a,
                baseline=b,
                ratio=speedup,
                ratio_label="x faster",
                target="≥ 8x faster",
                met=speedup is not None and speedup >= 8,
                notes=["baseline: 1,000 apply_async calls in a loop (publish only)"],
            )
        )
        speedup_pub = pair_ratio(publish_ms, b, lambda e, x: x / e)
        ctx.add(
            Row(
                scenario="S4",
                what=f"for_each fan-out of {n:,}: publish only",
                unit="ms",
                engine=list(publish_ms),
                baseline=b,
                ratio=speedup_pub,
                ratio_label="x faster",
                # A part of the row above, shown to tell the publish from the bookkeeping.
                target="—",
            )
        )
    finally:
        with contextlib.suppress(Exception):
            purge(celery, w.sink_queue)
        orch.tools.provider.close()
        celery.close()
        base.close()


@contextlib.contextmanager
def counting(engine: Engine) -> Iterator[dict[str, Any]]:
    """Statements and commits on every engine of this process (``engine`` names the scope).

    A Database has a second pool for claims (``Database.autocommit(durable=False)``), so
    the count listens on all engines. On an autocommit connection each write statement
    is a commit of its own and ``commit()`` sends nothing, so that is how they count.
    """
    counts: dict[str, Any] = {"commits": 0, "statements": 0, "sql": []}

    def autocommit(conn: Any) -> bool:
        return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"

    def on_commit(conn: Any) -> None:
        if not autocommit(conn):
            counts["commits"] += 1

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counts["statements"] += 1
        counts["sql"].append(" ".join(statement.split())[:160])
        if autocommit(conn) and not statement.lstrip().upper().startswith("SELECT"):
            counts["commits"] += 1

    event.listen(Engine, "commit", on_commit)
    event.listen(Engine, "before_cursor_execute", on_execute)
    try:
        yield counts
    finally:
        event.remove(Engine, "commit", on_commit)
        event.remove(Engine, "before_cursor_execute", on_execute)


def run_s8(ctx: Ctx) -> None:
    eng = ctx.engine
    commits: list[float] = []
    statements: list[float] = []
    millis: list[float] = []
    sql: list[str] = []
    for i in range(ctx.sizes.light_pairs + 1):
        ex_id = eng.create_execution(ctx.seed.noop_run, "f")
        with counting(eng.db.engine) as c:
            t0 = time.perf_counter()
            eng.orch.run_execution(ex_id)
            elapsed = (time.perf_counter() - t0) * 1000
        life = eng.api.call("GET", f"/v1/workflows/blocks/executions/{ex_id}")["lifecycle"]
        if life["status"] != "completed":
            raise BenchError(f"S8 execution {ex_id} ended {life}")
        if i == 0:
            continue  # warm-up
        commits.append(c["commits"])
        statements.append(c["statements"])
        millis.append(elapsed)
        sql = c["sql"]
    # Per step of a 52-step chain run, in-process (what S2 pays per step on a worker).
    run_id = eng.start_run(ctx.seed.chain_workflow, {"x": 1})
    with counting(eng.db.engine) as chain:
        t0 = time.perf_counter()
        messages = drain(eng.orch, eng.rec)
        chain_ms = (time.perf_counter() - t0) * 1000
    run = eng.api.call("GET", f"/v1/workflows/runs/{run_id}")
    status, steps = run["status"], int(run["progress"]["steps_total"])
    worst = max(commits)
    ctx.add(
        Row(
            scenario="S8",
            what="one block execution, worker side (DB commits)",
            unit="commits",
            engine=commits,
            target="≤ 2",
            met=worst <= 2,
            notes=[
                f"{statistics.median(statements):g} SQL statements and "
                f"{statistics.median(millis):.1f} ms in-process per execution; a chain run step "
                f"costs {chain['commits'] / steps:.1f} commits, "
                f"{chain['statements'] / steps:.1f} statements, {chain_ms / steps:.1f} ms"
            ],
            extra={
                "statements": statements,
                "in_process_ms": millis,
                "sql_of_last_execution": sql,
                "chain_run": {
                    "sql_first_statements": chain["sql"][:80],
                    "status": status,
                    "steps": steps,
                    "messages": messages,
                    "commits": chain["commits"],
                    "statements": chain["statements"],
                    "ms": chain_ms,
                },
            },
        )
    )
