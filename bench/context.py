"""What every scenario gets: the world, sizes, the in-process engine, seed data, rows."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.env import BenchError, World
from bench.inline import Engine, Seed
from bench.report import Row

if TYPE_CHECKING:
    from bench.dbos_peer import DbosPeer


@dataclass(frozen=True, kw_only=True)
class Sizes:
    pairs: int
    # Sub-second scenarios (S2, S3, S4, S6) run this many pairs: more samples, same minutes.
    light_pairs: int
    s1_executions: int
    s4_items: int
    s5_seconds: float
    s6_big: int
    s6_small: int
    s7_steps: int
    s9_executions: int
    s9_budget_s: float

    @classmethod
    def make(cls, *, pairs: int, quick: bool) -> Sizes:
        if quick:
            return cls(
                pairs=pairs,
                light_pairs=pairs * 2,
                s1_executions=1000,
                s4_items=1000,
                s5_seconds=2.0,
                s6_big=10_000,
                s6_small=100,
                s7_steps=1000,
                s9_executions=3000,
                s9_budget_s=60.0,
            )
        return cls(
            pairs=pairs,
            light_pairs=pairs * 2,
            s1_executions=5000,
            s4_items=1000,
            s5_seconds=6.0,
            s6_big=10_000,
            s6_small=100,
            s7_steps=1000,
            s9_executions=20_000,
            s9_budget_s=330.0,
        )


@dataclass(kw_only=True)
class Ctx:
    world: World
    sizes: Sizes
    engine: Engine
    seed: Seed
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    # The DBOS peer, made by the first scenario that measures it (see :meth:`dbos`).
    peer: DbosPeer | None = None

    @property
    def dbos(self) -> DbosPeer:
        if self.peer is None:
            try:
                from bench.dbos_peer import DbosPeer
            except ImportError as exc:
                raise BenchError(
                    f"DBOS is not installed ({exc}); `make bench` installs the bench extra "
                    "(pip install -e '.[bench]')"
                ) from None
            self.log("DBOS peer: creating its system database")
            self.peer = DbosPeer(self)
        return self.peer

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()
            self.peer = None

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        self.log(
            f"{row.scenario} {row.what}: engine {row.engine_median} baseline "
            f"{row.baseline_median} ratio {row.ratio} met {row.met}"
        )


def interleave(
    ctx: Ctx,
    name: str,
    pairs: int,
    engine: Callable[[], float],
    baseline: Callable[[], float],
) -> tuple[list[float], list[float]]:
    """A, B, A, B, ...: one engine sample then one baseline sample, ``pairs`` times."""
    got = rounds(ctx, name, pairs, {"engine": engine, "baseline": baseline})
    return got["engine"], got["baseline"]


def rounds(
    ctx: Ctx, name: str, pairs: int, sides: dict[str, Callable[[], float]]
) -> dict[str, list[float]]:
    """A, B, C, A, B, C, ...: one sample of each side in turn, ``pairs`` times, so that
    the i-th samples of every side ran back to back (pair_ratio pairs them up)."""
    got: dict[str, list[float]] = {label: [] for label in sides}
    for i in range(pairs):
        for label, sample in sides.items():
            got[label].append(sample())
        line = " ".join(f"{label} {v[-1]:.2f}" for label, v in got.items())
        ctx.log(f"{name} pair {i + 1}/{pairs}: {line}")
    return got
