"""The chaos run's faults, injected from background threads while the units flow.

- PostgreSQL itself is restarted every 5-40 s, down for 0-2 s (``pg_ctl stop -m fast`` or
  ``-m immediate``, as a crash), for as long as the run lasts;
- worker pool processes of both hosts are SIGKILLed, Redis is restarted (everything it
  held is lost), and the second host is cut off for longer than the lease while it holds
  rows, then reconnected, at random moments between them.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, text

from tests.chaos.config import ChaosConfig
from tests.support.fleet import Fleet
from tests.support.netns import NetnsHost
from tests.support.pg_server import PostgresServer
from tests.support.redis_server import RedisServer

log = logging.getLogger("chaos")
TABLES = ("steps", "block_executions", "consensus_samples")
# Long enough for packets sent before the cut to be processed by the servers.
SETTLE_IN_FLIGHT_S = 0.5


@dataclass
class FaultInjector:
    config: ChaosConfig
    rng: random.Random
    fleet: Fleet
    redis: RedisServer
    pg: PostgresServer
    db_url: str
    host2: NetnsHost | None
    counts: Counter[str] = field(default_factory=Counter)
    # Rows the second host held when it was cut off: (table, id, attempt).
    cut_rows: list[tuple[str, str, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _pg_lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _pattern: str | None = None

    def start(self, *, pg: bool = True) -> None:
        """Start the kills, Redis restarts and cuts, and (``pg``) the PostgreSQL restarts."""
        self._spawn(self._events)
        if pg:
            self.start_pg()

    def start_pg(self) -> None:
        if self.config.pg_restarts:
            self._spawn(self._pg_loop)

    def _spawn(self, target: Any) -> None:
        t = threading.Thread(target=target, daemon=True)
        t.start()
        self._threads.append(t)

    def finish(self, timeout: float) -> None:
        """Let every planned kill, restart and cut happen (up to ``timeout``), then stop."""
        deadline = time.monotonic() + timeout
        self._threads[0].join(timeout=timeout)
        while (
            self.config.pg_restarts
            and self.counts["pg_restarts"] < self.config.min_pg_restarts
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)
        if self.host2 is not None and self.host2.cut:
            self.host2.reconnect()

    # -- PostgreSQL ------------------------------------------------------------------

    def _pg_loop(self) -> None:
        lo, hi = self.config.pg_every_s
        while not self._stop.wait(self.rng.uniform(lo, hi)):
            down = self.rng.uniform(*self.config.pg_down_s)
            mode = self.rng.choice(["fast", "immediate"])
            with self._pg_lock:
                self.pg.restart(down_s=down, mode=mode)
            self.counts["pg_restarts"] += 1

    # -- kills, Redis restarts, partitions ----------------------------------------------

    def _events(self) -> None:
        events = (
            ["kill"] * self.config.kills
            + ["redis"] * self.config.redis_restarts
            + ["partition"] * (self.config.partitions if self.host2 is not None else 0)
        )
        self.rng.shuffle(events)
        for event in events:
            if self._stop.wait(self.rng.uniform(*self.config.fault_gap_s)):
                return
            if event == "kill":
                self._kill()
            elif event == "redis":
                self.redis.restart()
                self.counts["redis_restarts"] += 1
            else:
                self._partition()

    def _kill(self) -> None:
        # A pool process may be between restarts: look again for a moment.
        for _ in range(40):
            children = [
                pid for w in self.fleet.workers if w.name != "beat" for pid in w.child_pids()
            ]
            if children:
                try:
                    os.kill(self.rng.choice(children), signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.counts["kills"] += 1
                return
            time.sleep(0.05)

    def _partition(self) -> None:
        """Cut the second host off while it holds rows, for longer than the lease."""
        assert self.host2 is not None
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            if not self._held_by_host2():
                time.sleep(0.02)
                continue
            self.host2.partition()
            # What it holds now, seen from this side, it cannot settle until reconnected
            # (a row it settled just before the cut is not one of them). A settle already
            # on the wire when the link went down still lands: let it, then look.
            time.sleep(SETTLE_IN_FLIGHT_S)
            held = self._held_by_host2()
            if not held:
                self.host2.reconnect()
                continue
            self.cut_rows.extend(held)
            self.counts["partitions"] += 1
            log.warning("second host cut off holding %d rows", len(held))
            self._stop.wait(self.config.partition_s)
            # Under PostgreSQL restarts a takeover may come late: stay cut until the rows
            # moved on (bounded), so the reconnected host's late settles meet the fence.
            cut_until = time.monotonic() + self.config.partition_s
            while time.monotonic() < cut_until and not self._stop.is_set():
                if self._moved_on(held):
                    break
                time.sleep(0.5)
            self.host2.reconnect()
            return

    def _moved_on(self, rows: list[tuple[str, str, int]]) -> bool:
        try:
            return taken_over(self.db_url, rows, quiet=True) == len(rows)
        except Exception:  # PostgreSQL restarting: look again
            return False

    def _held_by_host2(self) -> list[tuple[str, str, int]]:
        assert self.host2 is not None
        if self._pattern is None:
            self._pattern = f"%~net{self.host2.net_id()}:%"
        pattern = self._pattern
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return [
                    (table, str(r.id), int(r.attempt))
                    for table in TABLES
                    for r in conn.execute(
                        text(
                            f"SELECT id, attempt FROM {table} "
                            "WHERE state = 'running' AND worker LIKE :p"
                            # An owner waiting on its children is held by nobody.
                            + (" AND open_children = 0" if table != "consensus_samples" else "")
                        ),
                        {"p": pattern},
                    )
                ]
        except Exception:  # PostgreSQL restarting: look again
            return []
        finally:
            engine.dispose()


def taken_over(db_url: str, rows: list[tuple[str, str, int]], *, quiet: bool = False) -> int:
    """How many of the rows held by the cut-off host ended under a later attempt."""
    engine = create_engine(db_url)
    found = 0
    try:
        with engine.connect() as conn:
            for table, row_id, attempt in rows:
                row: Any = conn.execute(
                    text(f"SELECT state, attempt FROM {table} WHERE id = :id"),
                    {"id": row_id},
                ).one()
                if row.attempt > attempt and row.state in ("completed", "error", "cancelled"):
                    found += 1
                elif not quiet:
                    print(
                        f"chaos: cut row not taken over: {table} {row_id} held at attempt "
                        f"{attempt}, now {row.state} attempt {row.attempt}",
                        file=sys.stderr,
                    )
    finally:
        engine.dispose()
    return found
