"""``python -m bench`` (``make bench``): run the scenarios, print the table, write the JSON.

    python -m bench                       # everything, 5 pairs (about 15 minutes on 2 cores)
    python -m bench --quick               # smaller sizes (about 5 minutes)
    python -m bench --scenarios S2,S3 --pairs 10
    python -m bench --scenarios S1-API --quick

Needs PostgreSQL (``QUORUM_BENCH_DATABASE_URL``, else ``QUORUM_TEST_DATABASE_URL``, else
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) and ``redis-server`` on the PATH
(else a dedicated Redis database in ``QUORUM_BENCH_REDIS_URL``). Exit status 0 when every
scenario ran, whether or not its target was met; 1 when one broke.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from bench.context import Ctx, Sizes
from bench.env import BenchError, world
from bench.inline import Engine
from bench.report import Row

ALL = ("S1", "S1-API", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9")
# Scenarios with a DBOS peer (its system database is made only when one of them runs).
PEERED = {"S1", "S1-API", "S2", "S6"}

NOTES = [
    "Each scenario runs interleaved with its baseline and its peer in this invocation "
    "(engine, baseline, peer, engine, baseline, peer, ...); medians over the samples; each "
    "ratio is the median of the per-round ratios (each round ran back to back, so slow drifts "
    "of a shared machine cancel).",
    "S1-S3, S9: real worker processes (prefork, -E) on a private Redis and a fresh PostgreSQL "
    "database; the engine is submitted to as the API does it (commit, publish, mark queued) "
    "from the bench process, without HTTP (S1-API: over HTTP); end times are written by the "
    "workers.",
    "S4, S7, S8: the orchestrator / API in the bench process on the same database and Redis.",
]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="Quorum benchmarks")
    p.add_argument(
        "--scenarios",
        default=",".join(ALL),
        help="comma-separated subset of " + ",".join(ALL) + " (default: all)",
    )
    p.add_argument("--pairs", type=int, default=5, help="engine/baseline pairs (default 5)")
    p.add_argument("--quick", action="store_true", help="smaller sizes (about 5 minutes)")
    p.add_argument(
        "--out",
        type=Path,
        default=report.RESULTS,
        help=f"JSON results file (default {report.RESULTS})",
    )
    args = p.parse_args(argv)
    chosen = {s.strip().upper() for s in args.scenarios.split(",") if s.strip()}
    unknown = chosen - set(ALL)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.pairs < 1:
        p.error("--pairs must be at least 1")
    args.chosen = chosen
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # SIGTERM unwinds like Ctrl-C, so every process, the database and Redis are cleaned up.
    signal.signal(signal.SIGTERM, _terminate)
    sizes = Sizes.make(pairs=args.pairs, quick=args.quick)
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    chosen: set[str] = args.chosen
    failures: list[str] = []
    try:
        with world() as w:
            # In-process runs hand every message back to the bench (no successor run inline),
            # so each scenario decides what runs where.
            engine = Engine(w.settings(w.sink_queue, QUORUM_INLINE_SUCCESSORS="0"))
            ctx = Ctx(world=w, sizes=sizes, engine=engine, seed=engine.seed())
            try:
                ctx.log(f"world ready: database {w.db_name}, broker {w.broker_url}")
                failures = run_all(ctx, chosen)
                rows = ctx.rows
                notes = _peer_notes(ctx)
            finally:
                ctx.close()
                engine.close()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - t0
    order = {s: i for i, s in enumerate(ALL)}
    rows.sort(key=lambda r: order.get(r.scenario, 99))
    print()
    table = report.table(rows, peer_label=_peer_label(chosen))
    print(table)
    print()
    for note in NOTES + notes:
        print(f"- {note}")
    for r in rows:
        for note in r.notes:
            print(f"- {r.scenario}: {note}")
    for f in failures:
        print(f"- FAILED: {f}")
    mode = "quick" if args.quick else "full"
    print(f"\n{mode} run, {sizes.pairs} pairs, {elapsed / 60:.1f} min; raw samples in {args.out}")
    report.write(
        args.out,
        {
            "started_at": started_at.isoformat(),
            "elapsed_s": round(elapsed, 1),
            "mode": mode,
            "pairs": sizes.pairs,
            "sizes": sizes.__dict__,
            "scenarios": sorted(chosen, key=lambda s: order[s]),
            "host": report.host(),
            "notes": NOTES + notes,
            "failures": failures,
            "table": table,
            "rows": [r.as_json() for r in rows],
        },
    )
    return 1 if failures else 0


def _peer_label(chosen: set[str]) -> str:
    if not chosen & PEERED:
        return "peer"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"DBOS {version('dbos')}"
    except PackageNotFoundError:
        return "DBOS"


def _peer_notes(ctx: Ctx) -> list[str]:
    if ctx.peer is None:
        return []
    from bench.dbos_peer import settings_note

    return [settings_note()]


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_all(ctx: Ctx, chosen: set[str]) -> list[str]:
    from bench import inproc, memory, serving, workers

    groups: list[tuple[set[str], Callable[[], None]]] = [
        ({"S7"}, lambda: serving.run_s7(ctx)),
        ({"S8"}, lambda: inproc.run_s8(ctx)),
        ({"S4"}, lambda: inproc.run_s4(ctx)),
        ({"S5", "S6"}, lambda: serving.run_s5_s6(ctx, chosen)),
        ({"S1", "S1-API", "S2", "S3"}, lambda: workers.run_s1_s2_s3(ctx, chosen)),
        ({"S9"}, lambda: memory.run_s9(ctx)),
    ]
    failures: list[str] = []
    for names, run in groups:
        wanted = names & chosen
        if not wanted:
            continue
        ctx.log(f"running {', '.join(sorted(wanted))}")
        try:
            run()
        except Exception as exc:
            traceback.print_exc()
            label = ",".join(sorted(wanted))
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
            done = {r.scenario for r in ctx.rows}
            for name in sorted(wanted - done):
                ctx.rows.append(
                    Row(scenario=name, what="(failed, see log)", unit="", engine=[], met=False)
                )
    return failures


if __name__ == "__main__":
    sys.exit(main())
