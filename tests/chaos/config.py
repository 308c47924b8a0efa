"""What a chaos run does (ChaosConfig) and what it found (Figures)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ChaosConfig:
    # Units of work, each one POST: block executions of a function, multi-step runs,
    # consensus executions (n_consensus 3) and for_each runs.
    executions: int = 1500
    chain_runs: int = 1500
    consensus: int = 1000
    for_each_runs: int = 1000
    chain: int = 3  # function steps per multi-step run
    items: int = 3  # iterations per for_each run
    work_s: float = 0.02  # how long each function call works
    # Faults.
    kills: int = 12  # SIGKILLs of worker pool processes (both hosts)
    redis_restarts: int = 1
    pg_restarts: bool = True  # PostgreSQL itself, every pg_every_s, down for pg_down_s
    pg_every_s: tuple[float, float] = (5.0, 40.0)
    pg_down_s: tuple[float, float] = (0.0, 2.0)
    # False: PostgreSQL restarts only once every unit was accepted. A POST cut by a
    # restart can leave its Idempotency-Key answering 409 for 5 minutes (issue 16, item
    # 5), too long for the test suite's small run.
    pg_during_posts: bool = True
    min_pg_restarts: int = 1  # the run goes on until PostgreSQL restarted this often
    partitions: int = 1  # the second host cut off while it holds rows, then reconnected
    lease_s: float = 10.0
    partition_s: float = 25.0  # longer than the lease
    fault_gap_s: tuple[float, float] = (2.0, 8.0)  # between kills, Redis restarts, cuts
    # Load and limits.
    clients: int = 16  # threads POSTing units
    # First POSTs per second (retries are not paced): units keep arriving while the
    # faults happen instead of all in the first seconds. None: as fast as the API answers.
    post_rate: float | None = 15.0
    timeout_s: float = 1800.0
    seed: int = 7

    @property
    def units(self) -> int:
        return self.executions + self.chain_runs + self.consensus + self.for_each_runs


@dataclass(frozen=True, kw_only=True)
class Figures:
    units: int
    lost: int
    duplicates_terminal: int
    duplicates_by_key: int
    reexecuted: int
    kills: int
    redis_restarts: int
    pg_restarts: int
    partitions: int
    workers_exited: int
    # Beside the summary line (stderr).
    completed: int = 0
    errored: int = 0
    taken_over: int = 0
    posts: int = 0
    elapsed_s: float = 0.0

    def line(self) -> str:
        return (
            f"chaos: units={self.units} lost={self.lost} "
            f"duplicates_terminal={self.duplicates_terminal} "
            f"duplicates_by_key={self.duplicates_by_key} reexecuted={self.reexecuted} "
            f"kills={self.kills} redis_restarts={self.redis_restarts} "
            f"pg_restarts={self.pg_restarts} partitions={self.partitions} "
            f"workers_exited={self.workers_exited}"
        )

    def details(self) -> str:
        return (
            f"chaos details: completed={self.completed} errored={self.errored} "
            f"rows_taken_over_from_the_cut_host={self.taken_over} posts={self.posts} "
            f"elapsed={self.elapsed_s:.0f}s"
        )

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicates_terminal == 0
            and self.duplicates_by_key == 0
            and self.workers_exited == 0
        )
