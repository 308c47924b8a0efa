"""A worker rides out Redis restarts; a worker that cannot go on exits non-zero.

Real ``quorum worker`` processes on a private redis-server that the test kills and starts
again. The shape that ended workers for good with kombu 5.7.0 (see workers/broker.py): a
task running (its message unacknowledged, ``acks_late``) while another pool process waits
in ``BRPOP``, and Redis going away under both.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet import ROOT, Api, Fleet, fleet_env, running_fleet
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private_fleet(
    module_database: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    env = fleet_env(
        module_database,
        redis_server.url,
        tmp_path_factory.mktemp("broker"),
        QUORUM_OUTBOX_AFTER_S="2",
        QUORUM_RATE_LIMIT_PER_MINUTE="0",
    )
    with running_fleet(env, workers=0) as fleet:
        fleet.start_worker("w1", concurrency=2)
        fleet.start_beat()
        fleet.serve()
        yield fleet


def _graph(tag: str, sleep_s: float) -> dict[str, Any]:
    return {
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
            {
                "id": "f",
                "type": "function",
                "config": {"function": "effect", "params": {"tag": tag, "sleep": sleep_s}},
            },
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"source": "start", "source_handle": "x", "target": "f", "target_handle": "value"},
            {"source": "f", "source_handle": "output", "target": "end", "target_handle": "y"},
        ],
    }


def _started(fleet: Fleet, tag: str, timeout: float = 20) -> None:
    log = Path(fleet.env["QUORUM_TEST_EFFECTS_DIR"]) / f"{tag}.log"
    deadline = time.monotonic() + timeout
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.exists(), "the block never started:\n" + "".join(fleet.workers[0].lines[-60:])


def test_a_worker_rides_out_redis_restarts_with_a_task_in_flight(
    private_fleet: Fleet, redis_server: RedisServer
) -> None:
    fleet = private_fleet
    (worker,) = [w for w in fleet.workers if w.name == "w1"]
    api = Api(fleet.base_url, fleet.new_key("broker"))
    try:
        for round_ in range(3):
            tag = f"flight-{round_}-{uuid.uuid4().hex[:6]}"
            wf = api.create_workflow(_graph(tag, 2.0))
            run_id = api.start_run(wf["id"], {"x": round_})["id"]
            _started(fleet, tag)  # one pool process busy, unacked; the other in BRPOP
            time.sleep(0.3)
            redis_server.kill()
            time.sleep(0.5)
            redis_server.start()
            assert api.wait_run(run_id, timeout=60)["status"] == "completed"
            assert worker.proc.poll() is None, "".join(worker.lines[-60:])
        # Still consuming: new work goes through the same worker.
        wf = api.create_workflow(_graph(f"after-{uuid.uuid4().hex[:6]}", 0))
        assert api.wait_run(api.start_run(wf["id"], {"x": 9})["id"])["status"] == "completed"
        assert worker.proc.poll() is None
        assert not [line for line in worker.lines if "Unrecoverable error" in line]
    finally:
        api.close()


def test_a_worker_that_cannot_recover_exits_non_zero(
    module_database: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    # A consumer step that fails for good (a test-only fault point): celery logs it as
    # "Unrecoverable error" and stops; the process must say so to its supervisor.
    env = fleet_env(
        module_database,
        redis_server.url,
        tmp_path,
        QUORUM_FAULT_POINTS="worker.unrecoverable",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "quorum.cli", "worker", "-c", "1", "-n", "doomed@%h"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Unrecoverable error" in proc.stdout + proc.stderr
    assert proc.returncode != 0
