"""Idempotency keys: replay, refusal of another request, failure leaves nothing, expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine import idempotency as idem
from engine.clock import utcnow
from engine.db.models import Base, IdempotencyRecord, Organization
from engine.db.session import Database
from engine.errors import Invalid
from engine.settings import Settings

ORG = "a" * 24
PATH = "/v1/workflows"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(Settings(data_dir=str(tmp_path)))
    Base.metadata.create_all(database.engine)
    yield database
    database.close()


def guard(key: str = "k", body: bytes = b'{"n": 1}', **kw: str) -> idem.Guard:
    args = {"organization_id": ORG, "key": key, "method": "POST", "path": PATH, **kw}
    return idem.guard(body=body, **args)


def do_work(db: Database, g: idem.Guard, name: str, *, fail: bool = False) -> idem.Replay | None:
    """A unit of work guarded by ``g``: creates an organization named ``name``."""
    try:
        with db.transaction() as s:
            idem.enter(s, g)
            s.add(Organization(name=name))
            idem.remember(s, g, status=201, body=f'{{"name":"{name}"}}')
            if fail:
                raise RuntimeError("the work failed after recording its key")
    except idem.Replayed as found:
        return found.replay
    return None


def names(db: Database) -> list[str]:
    with db.transaction() as s:
        return sorted(o.name for o in s.query(Organization))


def test_the_first_answer_is_replayed_and_the_work_done_once(db: Database) -> None:
    assert do_work(db, guard(), "first") is None
    assert do_work(db, guard(), "second") == idem.Replay(status=201, body='{"name":"first"}')
    assert names(db) == ["first"]
    # Another organization's identical key is its own.
    assert do_work(db, guard(organization_id="b" * 24), "theirs") is None
    assert names(db) == ["first", "theirs"]


def test_the_record_and_the_work_commit_together(db: Database) -> None:
    with pytest.raises(RuntimeError):
        do_work(db, guard(), "lost", fail=True)
    assert names(db) == []
    with db.transaction() as s:
        assert s.get(IdempotencyRecord, (ORG, "k")) is None
    # Nothing holds the key: the retry does the work.
    assert do_work(db, guard(), "retried") is None
    assert names(db) == ["retried"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"body": b'{"n": 999}'}, "another request body"),
        ({"path": "/v1/workflows/runs"}, "was used for POST /v1/workflows"),
        ({"method": "PUT"}, "was used for POST"),
    ],
)
def test_a_key_reused_for_another_request_is_422(
    db: Database, change: dict[str, object], why: str
) -> None:
    assert do_work(db, guard(), "first") is None
    with pytest.raises(idem.KeyReused) as info:
        do_work(db, guard(**change), "second")  # type: ignore[arg-type]
    assert isinstance(info.value, Invalid) and info.value.status == 422
    assert why in info.value.detail
    assert [e.loc for e in info.value.errors] == [("header", "Idempotency-Key")]
    assert names(db) == ["first"]


def test_the_fingerprint_ignores_key_order_and_whitespace() -> None:
    a = idem.fingerprint("POST", PATH, b'{"a": 1, "b": [1, 2]}')
    assert a == idem.fingerprint("post", PATH, b'{"b":[1,2],"a":1}')
    assert a != idem.fingerprint("POST", PATH, b'{"a": 1, "b": [2, 1]}')
    assert idem.fingerprint("POST", PATH, b"") == idem.fingerprint("POST", PATH, b"{}")
    assert idem.fingerprint("POST", PATH, b"\xff") != idem.fingerprint("POST", PATH, b"\xfe")


@pytest.mark.parametrize("key", ["", "x" * 201, "café", "tab\there", "nl\n"])
def test_malformed_keys_are_422(key: str) -> None:
    with pytest.raises(Invalid):
        guard(key=key)


def test_keys_of_200_printable_characters_are_fine(db: Database) -> None:
    assert do_work(db, guard(key="~ !" + "x" * 197), "ok") is None


def test_records_expire(db: Database) -> None:
    assert do_work(db, guard(), "old") is None
    assert do_work(db, guard(key="other"), "other") is None
    later = utcnow() + timedelta(seconds=idem.EXPIRE_AFTER_S + 1)
    with db.transaction() as s:
        idem.enter(s, guard(body=b"{}"), now=later)  # expired: free again, whatever the body
    assert idem.purge(db, now=later) == 1  # "other"
    with db.transaction() as s:
        assert s.get(IdempotencyRecord, (ORG, "k")) is None
        assert s.get(IdempotencyRecord, (ORG, "other")) is None


def test_an_amended_answer_is_what_a_repeat_gets(db: Database) -> None:
    assert do_work(db, guard(), "first") is None
    with db.transaction() as s:
        idem.amend(s, guard(), body='{"name":"first","state":"queued"}')
    replay = do_work(db, guard(), "again")
    assert replay == idem.Replay(status=201, body='{"name":"first","state":"queued"}')


def test_long_paths_are_cut_to_the_column(db: Database) -> None:
    path = "/v1/" + "p" * 1000
    assert do_work(db, guard(path=path), "first") is None
    assert do_work(db, guard(path=path), "again") == idem.Replay(
        status=201, body='{"name":"first"}'
    )
