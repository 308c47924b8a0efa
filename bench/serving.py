"""S5, S6 and S7: the HTTP API.

S5 serves the API with gunicorn exactly as ``quorum api --workers 2`` does, and the
baseline (:mod:`bench.pk_app`) with the same gunicorn configuration; 16 client threads
(:mod:`bench.load`) post for a fixed time, engine then baseline, pair after pair. No
worker consumes the API's queue during S5/S6 (it is purged after each sample): the
workers would otherwise compete with gunicorn for the same two cores.

S6 (:mod:`bench.forks`) posts checkpoint forks to that gunicorn. S7 counts the SQL
statements of each request (``before_cursor_execute`` on the app's engine) with the app
in-process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from bench import forks
from bench.context import Ctx, interleave
from bench.env import BenchError, Proc, free_port, http_ok, python
from bench.inproc import counting, purge
from bench.load import LoadResult, hammer
from bench.report import Row, median, pair_ratio
from bench.seam import create_celery

CLIENTS = 16


def start_api(ctx: Ctx, queue: str | None = None, name: str = "api") -> tuple[Proc, str]:
    """``quorum api --workers 2`` publishing to ``queue`` (default: the sink nobody consumes)."""
    w = ctx.world
    port = free_port()
    proc = w.start(
        name,
        [python(), "-m", "quorum.cli", "api", "--port", str(port), "--workers", "2"],
        # The per-key rate limit stays on (counted in memory) but out of reach: 16 clients
        # on one key would otherwise be throttled (429) instead of measured.
        env=w.env(queue or w.sink_queue, QUORUM_RATE_LIMIT_PER_MINUTE="1000000000"),
        ready=http_ok(f"http://127.0.0.1:{port}/healthz"),
    )
    return proc, f"http://127.0.0.1:{port}"


PK_APP = "bench.pk_app:create_asgi_app()"


def start_pk(ctx: Ctx) -> tuple[Proc, str]:
    w = ctx.world
    port = free_port()
    proc = w.start(
        "pk",
        [python(), "-m", "gunicorn", "-c", "python:api.gunicorn_conf", PK_APP],
        env=w.env(w.sink_queue, QUORUM_API_BIND=f"127.0.0.1:{port}", QUORUM_API_WORKERS="2"),
        ready=http_ok(f"http://127.0.0.1:{port}/healthz"),
    )
    return proc, f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def servers(ctx: Ctx) -> Iterator[tuple[str, str]]:
    api, api_url = start_api(ctx)
    try:
        pk, pk_url = start_pk(ctx)
        try:
            yield api_url, pk_url
        finally:
            ctx.world.stop(pk)
    finally:
        ctx.world.stop(api)


def run_s5_s6(ctx: Ctx, scenarios: set[str]) -> None:
    w = ctx.world
    celery = create_celery(w.settings(w.sink_queue))
    auth = {"Authorization": f"Bearer {ctx.seed.key}"}
    try:
        # Parents for S6 are made before the servers start (untimed).
        parents = forks.seed(ctx) if "S6" in scenarios else None
        with servers(ctx) as (api_url, pk_url):
            if "S5" in scenarios:
                run_s5(ctx, api_url, pk_url, auth, celery)
            if parents is not None:
                forks.run_s6(ctx, api_url, auth, parents)
            purge(celery, w.sink_queue)
    finally:
        celery.close()


def run_s5(ctx: Ctx, api_url: str, pk_url: str, auth: dict[str, str], celery: Any) -> None:
    w = ctx.world
    seconds = ctx.sizes.s5_seconds
    body = {"run_id": ctx.seed.noop_run, "block_id": "f"}
    results: dict[str, list[LoadResult]] = {"engine": [], "baseline": []}

    def engine() -> float:
        r = hammer(
            api_url,
            "/v1/workflows/blocks/executions",
            body,
            headers=auth,
            clients=CLIENTS,
            seconds=seconds,
        )
        purge(celery, w.sink_queue)
        results["engine"].append(r)
        _check(r, "engine")
        return r.rps

    def baseline() -> float:
        r = hammer(pk_url, "/pk", {"id": ctx.seed.noop_run}, clients=CLIENTS, seconds=seconds)
        results["baseline"].append(r)
        _check(r, "baseline")
        return r.rps

    # Warm-up: imports, pools and connections of every gunicorn worker and thread.
    hammer(api_url, "/v1/workflows/blocks/executions", body, headers=auth, seconds=1.0)
    hammer(pk_url, "/pk", {"id": ctx.seed.noop_run}, seconds=1.0)
    purge(celery, w.sink_queue)
    a, b = interleave(ctx, "S5", ctx.sizes.pairs, engine, baseline)
    ratio = pair_ratio(a, b, lambda e, x: e / x)
    extra = {k: [r.summary() for r in v] for k, v in results.items()}
    ctx.add(
        Row(
            scenario="S5",
            what=f"POST executions, gunicorn 2 workers, {CLIENTS} clients (throughput)",
            unit="req/s",
            engine=a,
            baseline=b,
            ratio=ratio,
            ratio_label="x",
            target="≥ 0.70x",
            met=ratio is not None and ratio >= 0.7,
            notes=[
                "baseline: one primary-key select under the same gunicorn config (bench/pk_app.py)"
            ],
            extra={"seconds_per_sample": seconds, "clients": CLIENTS, "samples": extra},
        )
    )
    p99_engine = [r.p(99) for r in results["engine"]]
    p99_base = [r.p(99) for r in results["baseline"]]
    p99_ratio = pair_ratio(p99_engine, p99_base, lambda e, x: e / x)
    ctx.add(
        Row(
            scenario="S5",
            what="POST executions, p99 latency",
            unit="ms",
            engine=p99_engine,
            baseline=p99_base,
            ratio=p99_ratio,
            ratio_label="x",
            target="≤ 1.30x",
            met=p99_ratio is not None and p99_ratio <= 1.3,
            extra={"p50_engine": [r.p(50) for r in results["engine"]]},
        )
    )


def _check(r: LoadResult, side: str) -> None:
    if r.errors > r.requests * 0.01:
        raise BenchError(f"S5 {side}: {r.errors} of {r.requests} requests failed: {r.statuses}")


def run_s7(ctx: Ctx) -> None:
    eng = ctx.engine
    n = ctx.sizes.s7_steps
    run_id = eng.turns_run(n - 5)
    api = eng.api
    api.call("GET", f"/v1/workflows/runs/{run_id}")  # warm-up

    def count(path: str) -> tuple[int, float, list[str], Any]:
        with counting(eng.db.engine) as c:
            t0 = time.perf_counter()
            body = api.call("GET", path)
            ms = (time.perf_counter() - t0) * 1000
        return int(c["statements"]), ms, list(c["sql"]), body

    run_n, run_ms, run_sql, _ = count(f"/v1/workflows/runs/{run_id}")
    pages: list[int] = []
    page_ms: list[float] = []
    steps_sql: list[str] = []
    seen = 0
    after = None
    while True:
        path = f"/v1/workflows/runs/{run_id}/steps?limit=200" + (f"&after={after}" if after else "")
        k, ms, sql, body = count(path)
        pages.append(k)
        page_ms.append(ms)
        steps_sql = steps_sql or sql
        seen += len(body["data"])
        if not body["has_more"]:
            break
        after = body["next_after"]
    if seen != n:
        raise BenchError(f"S7: listed {seen} steps, the run has {n}")
    ctx.add(
        Row(
            scenario="S7",
            what=f"GET a run with {n:,} steps (SQL statements)",
            unit="statements",
            engine=[run_n],
            target="≤ 3",
            met=run_n <= 3,
            notes=[f"{run_ms:.1f} ms in-process"],
            extra={"sql": run_sql},
        )
    )
    ctx.add(
        Row(
            scenario="S7",
            what=f"GET its steps, {len(pages)} pages of 200 (SQL statements, worst page)",
            unit="statements",
            engine=[float(max(pages))],
            target="≤ 3",
            met=max(pages) <= 3,
            notes=[f"{median(page_ms):.1f} ms per page in-process"],
            extra={"per_page": pages, "ms_per_page": page_ms, "sql_first_page": steps_sql},
        )
    )
