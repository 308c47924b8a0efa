"""Heartbeat leases with real worker processes: a frozen holder is taken over after its
lease, a working one never is, and the old holder's late settle is fenced off."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.ports import Work, WorkKind
from tests.support.fleet import Api, Fleet, by_step_id
from workers.celery_app import create_celery
from workers.dispatch import CeleryDispatcher

pytestmark = pytest.mark.integration

LEASE_S = 3


@pytest.fixture(scope="module")
def fleet_extra_env() -> dict[str, str]:
    return {"QUORUM_LEASE_S": str(LEASE_S), "QUORUM_OUTBOX_AFTER_S": "30"}


@pytest.fixture(scope="module")
def beat(fleet: Fleet) -> Iterator[None]:
    # The outbox sweeper: it publishes again a running row whose lease ran out.
    fleet.start_beat()
    yield


def _graph(tag: str, sleep_s: float) -> dict[str, Any]:
    return {
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
            {
                "id": "long",
                "type": "function",
                "config": {"function": "effect", "params": {"tag": tag, "sleep": sleep_s}},
            },
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"source": "start", "source_handle": "x", "target": "long", "target_handle": "value"},
            {"source": "long", "source_handle": "output", "target": "end", "target_handle": "y"},
        ],
    }


def _calls(fleet: Fleet, tag: str, *, at_least: int = 1, timeout: float = 20) -> list[int]:
    """Pids of the processes that ran the ``effect`` block so far (one line per call)."""
    log = Path(fleet.env["QUORUM_TEST_EFFECTS_DIR"]) / f"{tag}.log"
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= at_least or time.monotonic() > deadline:
            return [int(line.split()[1]) for line in lines]
        time.sleep(0.05)


def _long_step(api: Api, run_id: str) -> dict[str, Any]:
    return by_step_id(api.steps(run_id))["long"]


def test_a_frozen_holder_is_taken_over_after_its_lease_and_its_late_settle_is_fenced(
    api: Api, fleet: Fleet, beat: None
) -> None:
    tag = f"frozen-{uuid.uuid4().hex[:8]}"
    wf = api.create_workflow(_graph(tag, 2.0))
    run_id = api.start_run(wf["id"], {"x": 7})["id"]
    (holder,) = _calls(fleet, tag)
    os.kill(holder, signal.SIGSTOP)  # alive, but neither working nor renewing its lease
    try:
        run = api.wait_run(run_id, timeout=30)
        assert run["status"] == "completed", run
        step = _long_step(api, run_id)
        first, second = _calls(fleet, tag, at_least=2)
        assert first == holder and second != holder
    finally:
        os.kill(holder, signal.SIGCONT)
    # The old holder wakes up and settles: its attempt was superseded, so nothing moves.
    time.sleep(3)
    again = _long_step(api, run_id)
    assert again["lifecycle"] == step["lifecycle"]
    assert api.get(f"/v1/workflows/runs/{run_id}").json()["status"] == "completed"
    assert len(_calls(fleet, tag, at_least=2)) == 2


def test_a_block_longer_than_the_lease_keeps_its_holder(api: Api, fleet: Fleet, beat: None) -> None:
    tag = f"long-{uuid.uuid4().hex[:8]}"
    wf = api.create_workflow(_graph(tag, 3 * LEASE_S))
    run_id = api.start_run(wf["id"], {"x": 8})["id"]
    _calls(fleet, tag)
    step_row = _long_step(api, run_id)["id"]
    app = create_celery(fleet.settings)
    try:
        dispatcher = CeleryDispatcher(app)
        for _ in range(3):  # duplicates, past the first lease: each finds it renewed
            time.sleep(LEASE_S)
            dispatcher.dispatch([Work(kind=WorkKind.STEP, id=step_row)])
    finally:
        app.close()
    run = api.wait_run(run_id, timeout=30)
    assert run["status"] == "completed"
    assert len(_calls(fleet, tag)) == 1  # ran once: never taken over
