"""Idempotency keys: claim, replay, conflicts, failure release, staleness and expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine import idempotency as idem
from engine.clock import utcnow
from engine.db.models import Base, IdempotencyRecord
from engine.db.session import Database
from engine.errors import Conflict, Invalid
from engine.settings import Settings

ORG = "a" * 24
PATH = "/v1/workflows"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(Settings(data_dir=str(tmp_path)))
    Base.metadata.create_all(database.engine)
    yield database
    database.close()


def claim(db: Database, key: str = "k", **kw: object) -> idem.Claim | idem.Replay:
    args: dict[str, object] = {"organization_id": ORG, "key": key, "method": "POST", "path": PATH}
    args.update(kw)
    return idem.claim(db, **args)  # type: ignore[arg-type]


def test_first_claim_owns_then_repeats_replay(db: Database) -> None:
    first = claim(db)
    assert isinstance(first, idem.Claim)
    with pytest.raises(idem.KeyInUse) as info:
        claim(db)
    assert isinstance(info.value, Conflict) and info.value.status == 409
    assert idem.finish(db, first, status=201, body='{"id":"x"}')
    again = claim(db)
    assert again == idem.Replay(status=201, body='{"id":"x"}')
    # Another organization's identical key is its own.
    assert isinstance(claim(db, organization_id="b" * 24), idem.Claim)


def test_a_released_key_can_be_claimed_again(db: Database) -> None:
    first = claim(db)
    assert isinstance(first, idem.Claim)
    assert idem.release(db, first)
    second = claim(db)
    assert isinstance(second, idem.Claim) and second.token != first.token
    with db.transaction() as s:
        assert s.get(IdempotencyRecord, (ORG, "k")) is not None


def test_a_key_used_elsewhere_is_refused(db: Database) -> None:
    first = claim(db)
    assert isinstance(first, idem.Claim)
    idem.finish(db, first, status=201, body="{}")
    for kw in ({"path": "/v1/workflows/runs"}, {"method": "PUT"}):
        with pytest.raises(idem.KeyReused) as info:
            claim(db, **kw)
        assert isinstance(info.value, Invalid) and info.value.status == 422
        assert [e.loc for e in info.value.errors] == [("header", "Idempotency-Key")]


@pytest.mark.parametrize("key", ["", "x" * 201, "café", "tab\there", "nl\n"])
def test_malformed_keys_are_422(db: Database, key: str) -> None:
    with pytest.raises(Invalid):
        claim(db, key=key)


def test_keys_of_200_printable_characters_are_fine(db: Database) -> None:
    assert isinstance(claim(db, key="~ !" + "x" * 197), idem.Claim)


def test_a_stale_placeholder_is_taken_over_and_fences_its_first_owner(db: Database) -> None:
    first = claim(db)
    assert isinstance(first, idem.Claim)
    later = utcnow() + timedelta(seconds=idem.STALE_AFTER_S + 1)
    second = claim(db, now=later)
    assert isinstance(second, idem.Claim)
    # The first owner (slow, not dead after all) can neither finish nor release.
    assert not idem.finish(db, first, status=201, body='"first"')
    assert not idem.release(db, first)
    assert idem.finish(db, second, status=201, body='"second"')
    assert claim(db) == idem.Replay(status=201, body='"second"')


def test_finished_records_expire(db: Database) -> None:
    first = claim(db)
    assert isinstance(first, idem.Claim)
    idem.finish(db, first, status=201, body='"old"')
    later = utcnow() + timedelta(seconds=idem.EXPIRE_AFTER_S + 1)
    assert isinstance(claim(db, now=later), idem.Claim)

    other = claim(db, key="other")
    assert isinstance(other, idem.Claim)
    idem.finish(db, other, status=201, body='"x"')
    assert idem.purge(db, now=later) == 1  # "k" is in progress again, "other" expired
    with db.transaction() as s:
        assert s.get(IdempotencyRecord, (ORG, "other")) is None
        assert s.get(IdempotencyRecord, (ORG, "k")) is not None


def test_long_paths_are_cut_to_the_column(db: Database) -> None:
    path = "/v1/" + "p" * 1000
    first = claim(db, path=path)
    assert isinstance(first, idem.Claim)
    idem.finish(db, first, status=200, body="{}")
    assert claim(db, path=path) == idem.Replay(status=200, body="{}")
