"""engine.counters: one upsert per event, in the event's transaction, read back by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.counters import decode_labels, encode_labels, increment, read_counters
from engine.db.models import Base
from engine.db.session import Database
from engine.settings import Settings


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(Settings(data_dir=str(tmp_path)))
    Base.metadata.create_all(database.engine)
    yield database
    database.close()


def values(db: Database) -> dict[tuple[str, str], int]:
    with db.transaction() as s:
        return {(c.name, encode_labels(c.labels)): c.value for c in read_counters(s)}


def test_increment_creates_then_adds(db: Database) -> None:
    with db.transaction() as s:
        increment(s, "republished", 3)
    with db.transaction() as s:
        increment(s, "republished")
        increment(s, "terminations", reason="stale_run_reaper")
        increment(s, "terminations", reason="stale_run_reaper")
        increment(s, "terminations", reason="finally_safety_net")
    assert values(db) == {
        ("republished", ""): 4,
        ("terminations", "reason=finally_safety_net"): 1,
        ("terminations", "reason=stale_run_reaper"): 2,
    }


def test_a_rolled_back_event_is_not_counted(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as s:
        increment(s, "terminations", reason="cancelled")
        raise RuntimeError("the event's transaction fails")
    assert values(db) == {}


def test_nothing_to_add_writes_nothing(db: Database) -> None:
    with db.transaction() as s:
        increment(s, "republished", 0)
    assert values(db) == {}


def test_labels_are_canonical_and_round_trip() -> None:
    assert encode_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert decode_labels("a=1,b=2") == {"a": "1", "b": "2"}
    assert decode_labels("") == {}
    with pytest.raises(ValueError, match="may not hold"):
        encode_labels({"reason": "a,b"})
