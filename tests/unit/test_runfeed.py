"""The organization's run feed (engine.runfeed) on the embedded database: what it yields."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.db.models import Base, Organization, Run, Workflow
from engine.db.session import Database
from engine.events import record, record_run
from engine.lifecycle import RunStatus
from engine.runfeed import Position, follow_org, read_org_batch
from engine.settings import Settings

GRAPH = {"blocks": [], "edges": []}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(Settings(data_dir=str(tmp_path)))
    Base.metadata.create_all(database.engine)
    yield database
    database.close()


def _org_with_workflow(db: Database, name: str) -> tuple[str, str]:
    with db.transaction() as s:
        org = Organization(name=name)
        s.add(org)
        s.flush()
        wf = Workflow(organization_id=org.id, name="wf", draft=GRAPH, settings={})
        s.add(wf)
        s.flush()
        return org.id, wf.id


def _run(db: Database, org_id: str, wf_id: str, status: str = RunStatus.NOT_STARTED) -> str:
    with db.transaction() as s:
        run = Run(organization_id=org_id, workflow_id=wf_id, status=status, config=GRAPH)
        s.add(run)
        s.flush()
        record_run(s, run)
        # A steps event of the same run: the feed carries run events only.
        record(s, run.id, "steps", {"steps": []})
        return run.id


def _set_status(db: Database, run_id: str, status: str) -> None:
    with db.transaction() as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.status = status
        s.flush()
        record_run(s, run)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.5)


def test_only_run_events_of_the_organization_in_seq_order(db: Database) -> None:
    acme, acme_wf = _org_with_workflow(db, "acme")
    other, other_wf = _org_with_workflow(db, "other")
    first = _run(db, acme, acme_wf)
    theirs = _run(db, other, other_wf)
    second = _run(db, acme, acme_wf)
    _set_status(db, first, RunStatus.FAILED)

    events = read_org_batch(db, acme, 0)
    assert [(e.kind, e.data["run_id"], e.data["status"]) for e in events] == [
        ("run", first, "not_started"),
        ("run", second, "not_started"),
        ("run", first, "failed"),
    ]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)
    # Resuming after an event gives exactly what follows it.
    assert read_org_batch(db, acme, seqs[0]) == events[1:]
    assert read_org_batch(db, acme, seqs[-1]) == []
    assert [e.data["run_id"] for e in read_org_batch(db, other, 0)] == [theirs]


def test_a_fresh_feed_starts_at_the_end_and_yields_what_comes_next(db: Database) -> None:
    acme, wf = _org_with_workflow(db, "acme")
    old = _run(db, acme, wf)
    clock = FakeClock()
    feed = follow_org(db, acme, None, poll_s=1.0, heartbeat_s=5.0, clock=clock, sleep=clock.sleep)
    position = next(feed)
    assert isinstance(position, Position)
    assert position.seq >= max(e.seq for e in read_org_batch(db, acme, 0))
    new = _run(db, acme, wf)
    _set_status(db, old, RunStatus.CANCELLED)
    got = [next(feed), next(feed)]
    assert [(e.data["run_id"], e.data["status"]) for e in got if e is not None] == [
        (new, "not_started"),
        (old, "cancelled"),
    ]
    # Nothing new: the feed waits (polls), then sends a heartbeat after 5 s of silence.
    assert next(feed) is None
    assert clock.sleeps and max(clock.sleeps) <= 1.0


def test_a_resumed_feed_replays_from_its_position_and_ends_after_max_s(db: Database) -> None:
    acme, wf = _org_with_workflow(db, "acme")
    a = _run(db, acme, wf)
    b = _run(db, acme, wf)
    first_seq = read_org_batch(db, acme, 0)[0].seq
    clock = FakeClock()
    items = list(
        follow_org(db, acme, first_seq, max_s=3.0, heartbeat_s=60, clock=clock, sleep=clock.sleep)
    )
    assert [getattr(e, "data", {}).get("run_id") for e in items] == [b]  # not a
    assert a != b
    assert clock.now >= 3.0
