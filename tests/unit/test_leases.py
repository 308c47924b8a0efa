"""Heartbeat leases: a row is taken over exactly when its holder stopped renewing it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import errors as pg
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from engine.claims import claim
from engine.clock import as_utc, utcnow
from engine.db.models import Step
from engine.dbfaults import DatabaseAway
from engine.functions import FunctionRegistry
from engine.leases import LeaseKeeper
from engine.outbox import sweep
from engine.ports import WorkKind
from engine.settings import Settings
from engine.testing import InProcessEngine
from engine.worker import steps
from engine.worker.entry import Worker

LEASE_S = 30.0
GRAPH = {
    "blocks": [
        {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
        {"id": "f", "type": "function", "config": {"function": "probe"}},
    ],
    "edges": [{"source": "start", "source_handle": "x", "target": "f", "target_handle": "value"}],
}


class Probe:
    """The ``probe`` function: records which rows the worker's keeper holds while it runs."""

    def __init__(self) -> None:
        self.keeper: LeaseKeeper | None = None
        self.seen: list[dict[tuple[str, str], int]] = []

    def __call__(self, inputs: dict[str, Any]) -> Any:
        assert self.keeper is not None
        self.seen.append(self.keeper.held())
        return inputs["value"]


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def engine(tmp_path: Path, probe: Probe) -> Iterator[InProcessEngine]:
    functions = FunctionRegistry()
    functions.register("probe", probe)
    settings = Settings(data_dir=str(tmp_path), lease_s=LEASE_S, inline_successors=0)
    e = InProcessEngine(settings, functions=functions, worker="host-a:1")
    e.worker.leases = LeaseKeeper(e.db, worker="host-a:1", lease_s=LEASE_S)
    probe.keeper = e.worker.leases
    yield e
    e.close()


def _step(engine: InProcessEngine, run_id: str, step_id: str = "f") -> Step:
    return engine.steps(run_id)[step_id]


def _deliver_start(engine: InProcessEngine) -> str:
    run_id = engine.start(engine.workflow(GRAPH), {"x": 1})
    engine.worker.run_step(engine.dispatcher.queue.pop(0).id)  # start: f is queued
    return run_id


def _claim(engine: InProcessEngine, row_id: str, worker: str, alive: bool | None, now: Any) -> Any:
    with engine.db.transaction() as s:
        return claim(
            s,
            Step,
            row_id,
            worker=worker,
            holder_alive=lambda holder: alive,
            lease=timedelta(seconds=LEASE_S),
            now=now,
        )


def test_a_live_holder_past_its_lease_is_taken_over(engine: InProcessEngine) -> None:
    # A live process that stopped renewing (it gave the row up, or is cut off from the
    # database) is no longer working on the row: its pid being alive proves nothing.
    row_id = _step(engine, _deliver_start(engine)).id
    t0 = utcnow()
    first = _claim(engine, row_id, "host-a:1", None, t0)
    assert as_utc(first.row.leased_until) == t0 + timedelta(seconds=LEASE_S)
    assert _claim(engine, row_id, "host-b:1", True, t0 + timedelta(seconds=29)) is None
    second = _claim(engine, row_id, "host-b:1", True, t0 + timedelta(seconds=31))
    assert (second.attempt, second.taken_over, second.worker) == (2, True, "host-b:1")


def test_a_renewed_lease_keeps_a_long_block_with_its_holder(engine: InProcessEngine) -> None:
    row_id = _step(engine, _deliver_start(engine)).id
    t0 = utcnow()
    first = _claim(engine, row_id, "host-a:1", None, t0)
    keeper = LeaseKeeper(engine.db, worker="host-a:1", lease_s=LEASE_S)
    keeper.hold(Step, row_id, first.attempt)
    for minutes in range(1, 4):  # an hour-long block: renewed every third of the lease
        now = t0 + timedelta(minutes=minutes)
        assert keeper.renew(now - timedelta(seconds=10)) == 1
        assert _claim(engine, row_id, "host-b:1", None, now) is None
    keeper.keep_only()
    assert keeper.renew(t0) == 0  # given up: nothing is renewed any more


def test_a_renewal_is_fenced_on_the_holder_and_its_attempt(engine: InProcessEngine) -> None:
    row_id = _step(engine, _deliver_start(engine)).id
    t0 = utcnow()
    _claim(engine, row_id, "host-a:1", None, t0)
    _claim(engine, row_id, "host-b:1", False, t0)  # taken over: attempt 2, host-b
    stale = LeaseKeeper(engine.db, worker="host-a:1", lease_s=LEASE_S)
    stale.hold(Step, row_id, 1)
    assert stale.renew() == 0
    current = LeaseKeeper(engine.db, worker="host-b:1", lease_s=LEASE_S)
    current.hold(Step, row_id, 2)
    assert current.renew() == 1


def test_a_worker_holds_exactly_the_row_it_works_on(engine: InProcessEngine, probe: Probe) -> None:
    run_id = _deliver_start(engine)
    keeper = engine.worker.leases
    assert keeper is not None and keeper.held() == {}  # start settled: released
    row = _step(engine, run_id)
    engine.drain()
    assert probe.seen == [{("steps", row.id): 1}]
    assert keeper.held() == {}
    assert engine.run(run_id).status == "completed"


def test_a_row_given_up_unsettled_is_swept_once_its_lease_runs_out(
    engine: InProcessEngine, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database went away mid-settle and the task's retries ran out: the row stays
    ``running`` under a live worker that is done with it. The sweep must not skip it."""
    run_id = _deliver_start(engine)
    row_id = _step(engine, run_id).id
    orch = engine.worker

    def away(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("UPDATE steps ...", {}, pg.AdminShutdown("terminating"))

    monkeypatch.setattr(steps, "settle_step", away)
    with pytest.raises(DatabaseAway):
        orch.run_step(engine.dispatcher.queue.pop(0).id)
    monkeypatch.undo()
    assert orch.leases is not None and orch.leases.held() == {}
    assert _step(engine, run_id).state == "running"
    alive = {"host-a:1": True}  # the worker process lives on, running other tasks
    assert (
        sweep(
            engine.db, engine.dispatcher, older_than_s=60, lease_s=LEASE_S, holder_alive=alive.get
        )
        == 0
    )
    with engine.db.transaction() as s:  # ... until its lease runs out, unrenewed
        past = utcnow() - timedelta(seconds=1)
        s.execute(update(Step).where(Step.id == row_id).values(leased_until=past))
    assert (
        sweep(
            engine.db, engine.dispatcher, older_than_s=60, lease_s=LEASE_S, holder_alive=alive.get
        )
        == 1
    )
    assert [w.kind for w in engine.dispatcher.queue] == [WorkKind.STEP]
    other = Worker(
        db=engine.db,
        dispatcher=engine.dispatcher,
        tools=orch.tools,
        settings=engine.settings,
        worker="host-b:1",
        holder_alive=lambda holder: True,
    )
    other.run_step(engine.dispatcher.queue.pop(0).id)
    assert (_step(engine, run_id).state, _step(engine, run_id).attempt) == ("completed", 2)
    assert engine.run(run_id).status == "completed"


def test_the_sweep_notices_an_expired_lease_before_the_outbox_delay(
    engine: InProcessEngine,
) -> None:
    # A vanished host's row is published again as soon as its lease ran out, not only
    # once it is older than QUORUM_OUTBOX_AFTER_S.
    row_id = _step(engine, _deliver_start(engine)).id
    _claim(engine, row_id, "host-gone:7", None, utcnow() - timedelta(seconds=LEASE_S + 1))
    assert (
        sweep(
            engine.db,
            engine.dispatcher,
            older_than_s=3600,
            lease_s=LEASE_S,
            holder_alive=lambda w: None,
        )
        == 1
    )
