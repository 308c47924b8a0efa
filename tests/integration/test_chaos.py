"""A small chaos run on every CI run, under a minute (``make chaos`` runs the full size).

Every fault of the full run, scaled down: worker pool processes SIGKILLed on both hosts,
Redis restarted, PostgreSQL itself restarted (while the units are being posted, each POST
retried with its Idempotency-Key until it gets a 2xx), and the second host (its own
network namespace) cut off for longer than its lease while it holds rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import ChaosConfig, run_chaos
from tests.support.services import on_ci, require_postgres, require_redis

pytestmark = pytest.mark.integration

SMALL = ChaosConfig(
    executions=60,
    chain_runs=60,
    consensus=40,
    for_each_runs=40,
    work_s=0.1,
    kills=4,
    redis_restarts=1,
    pg_every_s=(2.0, 6.0),
    pg_during_posts=True,
    min_pg_restarts=1,
    partitions=1,
    lease_s=3.0,
    partition_s=10.0,
    fault_gap_s=(0.3, 1.5),
    clients=8,
    post_rate=30.0,
    timeout_s=240,
)


@pytest.mark.timeout(300)
def test_small_chaos_loses_nothing_and_does_nothing_twice(tmp_path: Path) -> None:
    require_postgres()  # the server binaries and redis-server come with the services
    require_redis()
    if os.geteuid() != 0:
        message = "the partitioned second host needs root (ip netns)"
        if on_ci():
            pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    figures = run_chaos(SMALL, tmp_path)
    print(figures.line())
    print(figures.details())
    assert figures.units == 200
    assert figures.lost == 0, figures.line()
    assert figures.duplicates_terminal == 0, figures.line()
    assert figures.duplicates_by_key == 0, figures.line()
    assert figures.workers_exited == 0, figures.line()
    assert figures.completed == 200, figures.details()
    assert (figures.kills, figures.redis_restarts, figures.partitions) == (4, 1, 1)
    assert figures.pg_restarts >= 1
    assert figures.taken_over >= 1, figures.details()  # the cut host's rows moved on
