"""S1 and S1-API: one-step units through 2 worker processes, until all are done.

* S1, engine path: ``s1_executions`` queued single-block executions of ``noop`` (rows
  inserted untimed), published at once from this process; throughput from the publish to
  the last ``completed_at``.
* S1-API: the same units submitted over HTTP: 16 client threads post
  ``/v1/workflows/blocks/executions`` to a real ``quorum api --workers 2`` (gunicorn, the
  per-key rate limit out of reach) that publishes to the engine's workers; throughput from
  the first request to the last ``completed_at``, so the API's insert and publish count.
* raw Celery: the same number of no-op tasks sent from one thread (:mod:`bench.workers`).
* DBOS: the same number of one-step workflows enqueued with ``DBOSClient`` by 16 threads
  and run by 2 DBOS worker processes (:mod:`bench.dbos_peer`), first enqueue to last
  ``completed_at``.

Each round runs one sample of every side back to back; the ratios pair samples of the
same round.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from bench.context import Ctx, rounds
from bench.env import BenchError, wait_for
from bench.load import hammer
from bench.report import Row, pair_ratio
from bench.seam import BlockExecution
from bench.serving import CLIENTS, start_api
from bench.workers import executions_done

if TYPE_CHECKING:
    from bench.workers import Sides

PATH = "/v1/workflows/blocks/executions"


class ApiUnits:
    """S1-API's engine side: a gunicorn API publishing to the engine's workers."""

    def __init__(self, ctx: Ctx, url: str) -> None:
        self.ctx = ctx
        self.url = url
        self.auth = {"Authorization": f"Bearer {ctx.seed.key}"}
        # Per sample: how the posting went (its duration against the whole sample's).
        self.posts: list[dict[str, Any]] = []

    def batch_of(self, n: int) -> Callable[[], float]:
        return lambda: self.batch(n)

    def batch(self, n: int) -> float:
        ctx = self.ctx
        # A fresh source run per sample (untimed), so its executions are exactly this batch.
        run_id = ctx.engine.run_inline(ctx.seed.noop_workflow, {"x": 1})
        body = {"run_id": run_id, "block_id": "f"}
        r = hammer(
            self.url, PATH, body, headers=self.auth, clients=CLIENTS, seconds=600, max_requests=n
        )
        if r.requests != n or r.errors:
            raise BenchError(f"S1-API: {r.errors} of {r.requests} posts failed: {r.statuses}")
        where = BlockExecution.run_id == run_id
        wait_for(
            lambda: executions_done(ctx.engine.db, where)[0] == n,
            timeout=60 + n / 10,
            interval=1.0,
            what=f"{n} executions posted to the API",
        )
        _, ok, last = executions_done(ctx.engine.db, where)
        if ok != n or last is None:
            raise BenchError(f"S1-API: only {ok} of {n} executions completed")
        self.posts.append({**r.summary(), "sample_s": round(last - r.started_at, 3)})
        return n / (last - r.started_at)


@contextlib.contextmanager
def api_units(ctx: Ctx) -> Iterator[ApiUnits]:
    proc, url = start_api(ctx, ctx.world.engine_queue, name="api-s1")
    try:
        units = ApiUnits(ctx, url)
        units.batch(4 * CLIENTS)  # warm-up: imports, pools, connections of both workers
        yield units
    finally:
        ctx.world.stop(proc)


def run_s1(ctx: Ctx, sd: Sides, scenarios: set[str]) -> None:
    n = ctx.sizes.s1_executions
    with contextlib.ExitStack() as stack:
        sides: dict[str, Callable[[], float]] = {}
        if "S1" in scenarios:
            sides["engine"] = lambda: sd.engine_batch(n)
        api: ApiUnits | None = None
        if "S1-API" in scenarios:
            api = stack.enter_context(api_units(ctx))
            sides["api"] = api.batch_of(n)
        sides["baseline"] = lambda: sd.baseline_batch(n)
        sides["dbos"] = lambda: ctx.dbos.units(n)
        got = rounds(ctx, "S1", ctx.sizes.pairs, sides)
    base, dbos = got["baseline"], got["dbos"]
    if "S1" in scenarios:
        add_rows(
            ctx,
            "S1",
            f"{n:,} no-op executions, 2 procs (throughput)",
            got["engine"],
            base,
            dbos,
            target=0.9,
            note="engine path: queued rows (inserted untimed) published at once",
        )
    if api is not None:
        add_rows(
            ctx,
            "S1-API",
            f"{n:,} executions POSTed, gunicorn 2 workers (throughput)",
            got["api"],
            base,
            dbos,
            target=0.6,
            peer_target=1.5,
            extra={"posts": api.posts[1:]},  # the first was the warm-up
            note=f"{CLIENTS} client threads post to the API; from the first request to the "
            "last completed_at",
        )


def add_rows(
    ctx: Ctx,
    scenario: str,
    what: str,
    engine: list[float],
    baseline: list[float],
    dbos: list[float],
    *,
    target: float,
    peer_target: float | None = None,
    note: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """The row against raw Celery and the row against DBOS (throughputs: higher is better)."""
    r = pair_ratio(engine, baseline, lambda e, x: e / x)
    ctx.add(
        Row(
            scenario=scenario,
            what=what,
            unit="units/s",
            engine=engine,
            baseline=baseline,
            ratio=r,
            ratio_label="x",
            target=f"≥ {target:.2f}x",
            met=r is not None and r >= target,
            notes=[note, "baseline: raw Celery no-op tasks sent from one thread"],
            extra={"units": ctx.sizes.s1_executions, "processes": 2, **(extra or {})},
        )
    )
    r = pair_ratio(engine, dbos, lambda e, x: e / x)
    ctx.add(
        Row(
            scenario=scenario,
            what=what,
            unit="units/s",
            engine=engine,
            peer="dbos",
            peer_samples=dbos,
            ratio=r,
            ratio_label="x",
            target="—" if peer_target is None else f"≥ {peer_target:.2f}x",
            met=None if peer_target is None else (r is not None and r >= peer_target),
        )
    )
