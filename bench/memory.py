"""S9: memory of a worker process over a long stream of executions.

One engine worker with one pool process; ``s9_executions`` queued executions are published
in chunks of 1,000 while the pool child's RSS is sampled; the row reports its growth from
after the warm-up to the end (stopping at a time budget on a slow machine).
"""

from __future__ import annotations

import contextlib
import threading
import time

from celery import Celery

from bench.context import Ctx
from bench.env import BenchError, wait_for
from bench.inline import queued_executions
from bench.report import Row
from bench.seam import CeleryDispatcher, Work, WorkKind, create_celery, utcnow
from bench.workers import batch_of, executions_done, start_engine_worker


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def run_s9(ctx: Ctx) -> None:
    """One worker process; push ``s9_executions`` and sample the pool child's RSS. Stops at
    the time budget if the machine is too slow to get through them all (said in the note)."""
    n = ctx.sizes.s9_executions
    budget = ctx.sizes.s9_budget_s
    w = ctx.world
    proc = start_engine_worker(ctx, "engine-s9", 1)
    settings = w.settings(w.engine_queue)
    celery = create_celery(settings)
    dispatcher = CeleryDispatcher(celery)
    db = ctx.engine.db
    stop = threading.Event()
    try:
        children = wait_for(proc.child_pids, timeout=30, interval=0.2, what="the pool child")
        child = children[0]
        template = ctx.engine.create_execution(ctx.seed.noop_run, "f")
        ctx.log(f"S9: inserting {n:,} queued executions")
        now = utcnow()
        ids = queued_executions(db, template, n, now)
        batch = batch_of(db, template, now)
        warm_at = min(max(1000, n // 10), n // 2)

        def done_count() -> int:
            return executions_done(db, *batch)[0]

        errors: list[BaseException] = []

        def publish() -> None:
            try:
                for i in range(0, n, 1000):
                    if stop.is_set():
                        return
                    dispatcher.dispatch(
                        [Work(kind=WorkKind.EXECUTION, id=x) for x in ids[i : i + 1000]]
                    )
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        t0 = time.time()
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        samples: list[tuple[float, int, int]] = []
        warm_rss: int | None = None
        warm_done = 0
        done = 0
        while True:
            done = done_count()
            rss = rss_kb(child)
            samples.append((round(time.time() - t0, 2), done, rss))
            if warm_rss is None and done >= warm_at:
                warm_rss, warm_done = rss, done
            if done >= n or (time.time() - t0 > budget and warm_rss is not None):
                break
            if errors:
                raise BenchError(f"S9 publishing failed: {errors[0]!r}")
            if not proc.alive() or time.time() - t0 > budget * 3:
                raise BenchError(f"S9: only {done} of {n} executions ended")
            time.sleep(2.0)
        elapsed = time.time() - t0
        stop.set()
        publisher.join(timeout=30)
        if child not in proc.child_pids():
            raise BenchError("S9: the pool child was replaced during the run")
        end_rss = rss_kb(child)
        assert warm_rss is not None
        growth = (end_rss - warm_rss) / warm_rss * 100
        cut = "" if done >= n else f" (time budget {budget:.0f} s reached: {done:,} of {n:,})"
        ctx.add(
            Row(
                scenario="S9",
                what=f"{done:,} executions, 1 proc (RSS growth after warm-up)",
                unit="%",
                engine=[growth],
                ratio=None,
                target="< +10 %",
                met=growth < 10,
                notes=[
                    f"RSS {warm_rss / 1024:.1f} MiB after {warm_done:,} executions, "
                    f"{end_rss / 1024:.1f} MiB after {done:,}; {done / elapsed:.0f} exec/s{cut}"
                ],
                extra={
                    "pushed": n,
                    "done": done,
                    "warm_rss_kb": warm_rss,
                    "end_rss_kb": end_rss,
                    "warm_after": warm_done,
                    "throughput_per_s": done / elapsed,
                    "samples_t_done_rsskb": samples,
                },
            )
        )
    finally:
        stop.set()
        celery.close()
        w.stop(proc)
        with contextlib.suppress(Exception):
            purge_queue(w.broker_url, w.engine_queue)


def purge_queue(broker_url: str, queue: str) -> None:
    from bench.inproc import purge

    app = Celery("bench-purge", broker=broker_url, set_as_current=False)
    try:
        purge(app, queue)
    finally:
        app.close()
