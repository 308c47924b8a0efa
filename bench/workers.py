"""S1, S2, S3 and S9: work through real worker processes, engine against raw Celery.

Both sides run as ``--pool=prefork -E`` Celery workers with the same concurrency, on the
same Redis, with the same flags (:mod:`bench.baseline`), side by side; the idle side only
waits on its queue while the other is measured. The engine is submitted to the way the
API does it (rows committed, then published through :class:`CeleryDispatcher`, then marked
queued), from this process, without HTTP (S5 measures the HTTP layer). Start times are
taken here just before submitting; end times are the ``completed_at`` the worker wrote
(engine) or the time a final task wrote into Redis (baseline): one clock, one host.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from celery import Celery, chain, chord
from sqlalchemy import func, select

from bench.baseline import COUNT, MARK, NOOP, PROVIDER, create_baseline
from bench.context import Ctx, interleave, rounds
from bench.env import BenchError, Proc, log_contains, python, wait_for
from bench.inline import CHAIN_LENGTH, EXTRACT_ANSWER, EXTRACT_MODEL, queued_executions
from bench.report import Row, pair_ratio
from bench.seam import (
    BlockExecution,
    CeleryDispatcher,
    Database,
    Run,
    Step,
    Work,
    WorkKind,
    create_celery,
    create_execution,
    start_run,
    utcnow,
)
from tests.support.chat_server import chat_server_process

TERMINAL = ("completed", "error", "cancelled", "skipped")
TERMINAL_RUN = ("completed", "failed", "cancelled", "aborted_looping_risk")


def start_engine_worker(ctx: Ctx, name: str, concurrency: int, **env: str) -> Proc:
    w = ctx.world
    return w.start(
        name,
        [
            python(),
            "-m",
            "quorum.cli",
            "worker",
            "-c",
            str(concurrency),
            "-n",
            f"{name}-{w.tag}@%h",
            "--loglevel",
            "INFO",
        ],
        env=w.env(w.engine_queue, QUORUM_WORKER_CONCURRENCY=str(concurrency), **env),
        ready=log_contains(" ready."),
    )


def start_baseline_worker(ctx: Ctx, name: str, concurrency: int) -> Proc:
    w = ctx.world
    env = w.env(
        w.baseline_queue,
        BENCH_BROKER_URL=w.broker_url,
        BENCH_QUEUE=w.baseline_queue,
        BENCH_RESULT_BACKEND=w.result_backend_url,
    )
    return w.start(
        name,
        [
            python(),
            "-m",
            "celery",
            "-A",
            "bench.baseline:app",
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            "-E",
            "--loglevel=INFO",
            f"--hostname={name}-{w.tag}@%h",
        ],
        env=env,
        ready=log_contains(" ready."),
    )


def batch_of(db: Database, template_id: str, created_at: datetime) -> tuple[Any, ...]:
    """The conditions that find one batch of cloned executions (same run, same created_at)."""
    with db.transaction() as s:
        run_id = s.scalar(select(BlockExecution.run_id).where(BlockExecution.id == template_id))
    return (BlockExecution.run_id == run_id, BlockExecution.created_at == created_at)


def executions_done(db: Database, *where: Any) -> tuple[int, int, float | None]:
    """(ended, completed, last completed_at) of the executions matching ``where``."""
    with db.transaction() as s:
        n, ok, last = s.execute(
            select(
                func.count(),
                func.count().filter(BlockExecution.state == "completed"),
                func.max(BlockExecution.completed_at),
            ).where(*where, BlockExecution.state.in_(TERMINAL))
        ).one()
    return int(n), int(ok), last.timestamp() if last else None


class Sides:
    """Producers of both sides in this process, and their worker processes."""

    def __init__(self, ctx: Ctx, chat_url: str) -> None:
        self.ctx = ctx
        w = ctx.world
        self.chat_url = chat_url
        self.settings = w.settings(w.engine_queue)
        self.celery = create_celery(self.settings)
        self.dispatcher = CeleryDispatcher(self.celery)
        self.base: Celery = create_baseline(w.broker_url, w.baseline_queue, w.result_backend_url)
        self.redis = w.redis_client()
        self.db = ctx.engine.db
        self.template = ctx.engine.create_execution(ctx.seed.noop_run, "f")
        self.chords: list[Any] = []

    def close(self) -> None:
        # Chord results subscribe to the result backend: let go of them while Redis is up.
        for result in self.chords:
            with contextlib.suppress(Exception):
                self.base.backend.remove_pending_result(result)
        self.chords.clear()
        self.celery.close()
        self.base.close()
        self.redis.close()

    # -- engine side ----------------------------------------------------------------------

    def publish(self, model: Any, work: list[Work]) -> None:
        """What the API does after its commit: publish, then mark the rows queued."""
        from bench.seam import mark_queued

        self.dispatcher.dispatch(work)
        with self.db.transaction() as s:
            mark_queued(s, model, [x.id for x in work])

    def executions_done(self, ids: list[str]) -> tuple[int, int, float | None]:
        return executions_done(self.db, BlockExecution.id.in_(ids))

    def engine_batch(self, n: int) -> float:
        """S1: n queued execution rows published at once; executions per second."""
        now = utcnow()
        ids = queued_executions(self.db, self.template, n, now)
        batch = batch_of(self.db, self.template, now)
        t0 = time.time()
        self.dispatcher.dispatch([Work(kind=WorkKind.EXECUTION, id=i) for i in ids])
        wait_for(
            lambda: executions_done(self.db, *batch)[0] == n,
            timeout=60 + n / 10,
            interval=1.0,  # the count scans the batch: poll gently, the end time is exact
            what=f"{n} engine executions",
        )
        _, ok, last = executions_done(self.db, *batch)
        if ok != n or last is None:
            raise BenchError(f"only {ok} of {n} engine executions completed")
        return n / (last - t0)

    def engine_chain(self) -> float:
        """S2: one run of the chain workflow; milliseconds from submit to completed_at."""
        ctx = self.ctx
        t0 = time.time()
        with self.db.transaction() as s:
            started = start_run(
                s, ctx.seed.org_id, workflow_id=ctx.seed.chain_workflow, inputs={"x": 1}
            )
            run_id = started.run.id
        self.publish(Step, started.work)
        return self._wait_run(run_id, t0)

    def _wait_run(self, run_id: str, t0: float) -> float:
        def done() -> Any:
            with self.db.transaction() as s:
                status, completed = s.execute(
                    select(Run.status, Run.completed_at).where(Run.id == run_id)
                ).one()
            return (status, completed) if status in TERMINAL_RUN else None

        status, completed = wait_for(done, timeout=120, interval=0.02, what=f"run {run_id}")
        if status != "completed" or completed is None:
            raise BenchError(f"run {run_id} ended {status}")
        return float((completed.timestamp() - t0) * 1000)

    def engine_consensus(self) -> float:
        """S3: one execution of the extract block (n_consensus 5); ms to completed_at."""
        ctx = self.ctx
        t0 = time.time()
        with self.db.transaction() as s:
            ex, work = create_execution(
                s, ctx.seed.org_id, run_id=ctx.seed.extract_run, block_id="ex"
            )
            ex_id = ex.id
        self.publish(BlockExecution, work)
        wait_for(
            lambda: self.executions_done([ex_id])[0] == 1,
            timeout=60,
            interval=0.01,
            what=f"execution {ex_id}",
        )
        _, ok, last = self.executions_done([ex_id])
        if ok != 1 or last is None:
            raise BenchError(f"consensus execution {ex_id} did not complete")
        return (last - t0) * 1000

    # -- baseline side ----------------------------------------------------------------------

    def _stamp(self, key: str, timeout: float) -> float:
        raw = wait_for(lambda: self.redis.get(key), timeout=timeout, interval=0.01, what=key)
        return float(raw)

    def baseline_batch(self, n: int) -> float:
        key = f"s1:{uuid.uuid4().hex}"
        t0 = time.time()
        with self.base.producer_or_acquire() as producer:
            for _ in range(n):
                self.base.send_task(COUNT, args=[key, n], producer=producer, ignore_result=True)
        end = self._stamp(f"{key}:done", timeout=60 + n / 10)
        return n / (end - t0)

    def baseline_chain(self) -> float:
        key = f"s2:{uuid.uuid4().hex}"
        links = [self.base.signature(NOOP, immutable=True) for _ in range(CHAIN_LENGTH - 1)]
        links.append(self.base.signature(MARK, args=[key], immutable=True))
        t0 = time.time()
        chain(*links, app=self.base).apply_async()
        return (self._stamp(key, timeout=120) - t0) * 1000

    def baseline_chord(self) -> float:
        key = f"s3:{uuid.uuid4().hex}"
        url = self.chat_url.rstrip("/") + "/chat/completions"
        header = [self.base.signature(PROVIDER, args=[url, i], immutable=True) for i in range(5)]
        body = self.base.signature(MARK, args=[key], immutable=True)
        t0 = time.time()
        self.chords.append(chord(header, app=self.base)(body))
        return (self._stamp(key, timeout=60) - t0) * 1000


@contextlib.contextmanager
def sides(ctx: Ctx, concurrency: int) -> Iterator[Sides]:
    with chat_server_process([EXTRACT_ANSWER], delay_ms=20) as chat_url:
        engine_proc = start_engine_worker(
            ctx,
            "engine",
            concurrency,
            QUORUM_PROVIDER="openai",
            QUORUM_PROVIDER_BASE_URL=chat_url,
            QUORUM_PROVIDER_MODEL=EXTRACT_MODEL,
        )
        base_proc = start_baseline_worker(ctx, "baseline", concurrency)
        s = Sides(ctx, chat_url)
        try:
            yield s
        finally:
            s.close()
            ctx.world.stop(engine_proc)
            ctx.world.stop(base_proc)


def run_s1_s2_s3(ctx: Ctx, scenarios: set[str]) -> None:
    """S1, S1-API, S2 and S3 on one pair of workers (engine, raw Celery) started once."""
    from bench import units

    sz = ctx.sizes
    with sides(ctx, concurrency=2) as sd:
        ctx.log("warm-up: both sides run a small batch, a chain and a consensus")
        sd.engine_batch(100)
        sd.baseline_batch(100)
        if "S2" in scenarios:
            sd.engine_chain()
            sd.baseline_chain()
        if "S3" in scenarios:
            sd.engine_consensus()
            sd.baseline_chord()
        if scenarios & {"S1", "S1-API"}:
            units.run_s1(ctx, sd, scenarios)
        if "S2" in scenarios:
            run_s2(ctx, sd)
        if "S3" in scenarios:
            a, b = interleave(ctx, "S3", sz.light_pairs, sd.engine_consensus, sd.baseline_chord)
            ratio = pair_ratio(a, b, lambda e, x: e / x)
            ctx.add(
                Row(
                    scenario="S3",
                    what="extract n_consensus 5, 20 ms provider (wall time)",
                    unit="ms",
                    engine=a,
                    baseline=b,
                    ratio=ratio,
                    ratio_label="x",
                    target="≤ 1.10x",
                    met=ratio is not None and ratio <= 1.1,
                    notes=[
                        "baseline: a real Celery chord, which needs a result backend (Redis, "
                        "baseline only; the engine joins with a counter on the row); its 5 "
                        "header tasks make the same HTTP call to the same 20 ms chat server"
                    ],
                )
            )


def run_s2(ctx: Ctx, sd: Sides) -> None:
    """The chain against a raw Celery chain and against a DBOS workflow of as many steps."""
    got = rounds(
        ctx,
        "S2",
        ctx.sizes.light_pairs,
        {
            "engine": sd.engine_chain,
            "baseline": sd.baseline_chain,
            "dbos": lambda: ctx.dbos.chain(CHAIN_LENGTH),
        },
    )
    a, b, d = got["engine"], got["baseline"], got["dbos"]
    what = f"{CHAIN_LENGTH}-block chain (wall time)"
    ratio = pair_ratio(a, b, lambda e, x: e / x)
    ctx.add(
        Row(
            scenario="S2",
            what=what,
            unit="ms",
            engine=a,
            baseline=b,
            ratio=ratio,
            ratio_label="x",
            target="≤ 0.50x",
            met=ratio is not None and ratio <= 0.5,
            notes=["baseline: a raw Celery chain of as many no-op tasks"],
            extra={"engine_steps": CHAIN_LENGTH + 2, "baseline_tasks": CHAIN_LENGTH},
        )
    )
    ratio = pair_ratio(a, d, lambda e, x: e / x)
    ctx.add(
        Row(
            scenario="S2",
            what=what,
            unit="ms",
            engine=a,
            peer="dbos",
            peer_samples=d,
            ratio=ratio,
            ratio_label="x",
            target="≤ 0.60x",
            met=ratio is not None and ratio <= 0.6,
            notes=[
                f"DBOS: a workflow of {CHAIN_LENGTH} no-op steps enqueued with DBOSClient, "
                "from the enqueue to its completed_at"
            ],
            extra={"dbos_steps": CHAIN_LENGTH},
        )
    )
