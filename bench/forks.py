"""S6: a checkpoint fork of a run with 10,000 finished steps.

The engine: ``POST /v1/workflows/runs/{id}/checkpoint`` (resume at turn 1) to the S5
gunicorn, for a parent of ``s6_big`` steps and, as the baseline, one of ``s6_small``
steps; the row asks that the fork's cost not grow with the parent's size. The parents are
two-turn runs made in-process (:meth:`bench.inline.Engine.turns_run`).

DBOS: ``DBOSClient.fork_workflow`` of a finished workflow of ``s6_big`` no-op steps (and
one of ``s6_small``) from its last step, so that every earlier step's checkpoint is
copied, as the engine's fork takes over every step of turn 0. Its parents are run for
real by DBOS workers before the servers start (untimed).

One round: engine big, engine small, DBOS big, DBOS small, back to back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from bench.context import Ctx, rounds
from bench.env import BenchError
from bench.report import Row, median, pair_ratio


@dataclass(frozen=True, kw_only=True)
class Parents:
    big: str
    small: str
    dbos_big: str
    dbos_small: str


def seed(ctx: Ctx) -> Parents:
    big, small = ctx.sizes.s6_big, ctx.sizes.s6_small
    ctx.log(f"S6: seeding runs of {big:,} and {small:,} steps")
    engine_big = ctx.engine.turns_run(big - 5)
    engine_small = ctx.engine.turns_run(small - 5)
    ctx.log(f"S6: DBOS workers run workflows of {big:,} and {small:,} no-op steps")
    t0 = time.monotonic()
    dbos_big = ctx.dbos.seed_steps(big)
    dbos_small = ctx.dbos.seed_steps(small)
    ctx.log(f"S6: DBOS parents done in {time.monotonic() - t0:.0f} s")
    return Parents(big=engine_big, small=engine_small, dbos_big=dbos_big, dbos_small=dbos_small)


def run_s6(ctx: Ctx, api_url: str, auth: dict[str, str], parents: Parents) -> None:
    big, small = ctx.sizes.s6_big, ctx.sizes.s6_small
    steps: dict[str, list[int]] = {"big": [], "small": [], "dbos_big": [], "dbos_small": []}
    dbos = ctx.dbos
    with httpx.Client(base_url=api_url, headers=auth, timeout=60) as http:

        def fork(parent: str, label: str) -> float:
            t0 = time.perf_counter()
            r = http.post(
                f"/v1/workflows/runs/{parent}/checkpoint",
                json={"resume_turn_index": 1, "input": {"ok": True}},
            )
            elapsed = (time.perf_counter() - t0) * 1000
            if r.status_code != 202:
                raise BenchError(f"S6 fork answered {r.status_code}: {r.text[:300]}")
            steps[label].append(int(r.json()["progress"]["steps_total"]))
            return elapsed

        def dbos_fork(parent: str, n: int, label: str) -> float:
            ms, fork_id = dbos.fork(parent, n)
            if not steps[label]:  # once: the fork did copy every earlier checkpoint
                steps[label].append(dbos.copied_steps(fork_id))
                if steps[label][0] != n - 1:
                    raise BenchError(f"DBOS fork copied {steps[label][0]} steps, not {n - 1}")
            return ms

        sides = {
            "big": lambda: fork(parents.big, "big"),
            "small": lambda: fork(parents.small, "small"),
            "dbos_big": lambda: dbos_fork(parents.dbos_big, big, "dbos_big"),
            "dbos_small": lambda: dbos_fork(parents.dbos_small, small, "dbos_small"),
        }
        for sample in sides.values():  # warm-up
            sample()
        got = rounds(ctx, "S6", ctx.sizes.light_pairs, sides)
    add_rows(ctx, got, steps)


def add_rows(ctx: Ctx, got: dict[str, list[float]], steps: dict[str, list[int]]) -> None:
    big, small = ctx.sizes.s6_big, ctx.sizes.s6_small
    a, b = got["big"], got["small"]
    ratio = pair_ratio(a, b, lambda e, x: e / x)
    med = median(a)
    what = f"checkpoint fork of a {big:,}-step run (POST, wall time)"
    ctx.add(
        Row(
            scenario="S6",
            what=what,
            unit="ms",
            engine=a,
            baseline=b,
            ratio=ratio,
            ratio_label="x",
            target="≤ 30 ms and ≤ 1.50x",
            met=med is not None and med <= 30 and ratio is not None and ratio <= 1.5,
            notes=[f"baseline: the same fork of a {small:,}-step run"],
            extra={"child_steps_total": {k: steps[k] for k in ("big", "small")}},
        )
    )
    copied = {k: steps[k] for k in ("dbos_big", "dbos_small")}
    ratio = pair_ratio(a, got["dbos_big"], lambda e, x: e / x)
    ctx.add(
        Row(
            scenario="S6",
            what=what,
            unit="ms",
            engine=a,
            peer="dbos",
            peer_samples=got["dbos_big"],
            ratio=ratio,
            ratio_label="x",
            target="≤ 0.30x",
            met=ratio is not None and ratio <= 0.3,
            notes=[
                f"DBOS: fork_workflow of a workflow of {big:,} finished no-op steps from its "
                "last step (DBOSClient, in this process); each fork is cancelled afterwards, "
                "untimed"
            ],
            extra={"dbos_copied_steps": copied},
        )
    )
    ratio = pair_ratio(b, got["dbos_small"], lambda e, x: e / x)
    ctx.add(
        Row(
            scenario="S6",
            what=f"checkpoint fork of a {small:,}-step run (POST, wall time)",
            unit="ms",
            engine=b,
            peer="dbos",
            peer_samples=got["dbos_small"],
            ratio=ratio,
            ratio_label="x",
            target="—",
        )
    )
