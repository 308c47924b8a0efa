"""Runs listed by creation time and by id prefix (engine.runs.list_runs, embedded database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.db.models import Base, Organization, Run, Workflow
from engine.db.session import Database
from engine.pages import PageRequest
from engine.runs import list_runs
from engine.settings import Settings

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _id_at(moment: datetime, tail: str) -> str:
    return f"{int(moment.timestamp()):08x}{tail:0>16}"


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[Database, str, dict[str, str]]]:
    db = Database(Settings(data_dir=str(tmp_path)))
    Base.metadata.create_all(db.engine)
    ids: dict[str, str] = {}
    with db.transaction() as s:
        org, other = Organization(name="acme"), Organization(name="other")
        s.add_all([org, other])
        s.flush()
        wf = Workflow(organization_id=org.id, name="wf", draft={}, settings={})
        s.add(wf)
        s.flush()
        for name, minutes, tail in (("early", 0, "a1"), ("mid", 30, "b2"), ("late", 60, "b3")):
            at = T0 + timedelta(minutes=minutes)
            run = Run(
                id=_id_at(at, tail),
                organization_id=org.id,
                workflow_id=wf.id,
                config={},
                created_at=at,
                updated_at=at,
            )
            s.add(run)
            ids[name] = run.id
        org_id = org.id
    yield db, org_id, ids
    db.close()


def _listed(db: Database, org_id: str, **filters: object) -> list[str]:
    with db.transaction() as s:
        page = list_runs(s, org_id, PageRequest(), **filters)  # type: ignore[arg-type]
        return [r.id for r in page.items]


def test_a_time_range_includes_its_start_and_excludes_its_end(
    seeded: tuple[Database, str, dict[str, str]],
) -> None:
    db, org, ids = seeded
    assert _listed(db, org) == [ids["late"], ids["mid"], ids["early"]]
    mid = T0 + timedelta(minutes=30)
    assert _listed(db, org, created_from=mid) == [ids["late"], ids["mid"]]
    assert _listed(db, org, created_to=mid) == [ids["early"]]
    assert _listed(db, org, created_from=T0, created_to=mid + timedelta(seconds=1)) == [
        ids["mid"],
        ids["early"],
    ]
    # Another time zone names the same instant.
    tz = datetime(2026, 3, 1, 12, 45, tzinfo=UTC).astimezone(ZoneInfo("Europe/Berlin"))
    assert tz.hour == 13
    assert _listed(db, org, created_from=tz) == [ids["late"]]
    assert _listed(db, org, created_from=T0 + timedelta(hours=2)) == []


def test_an_id_prefix_finds_the_runs_whose_id_starts_with_it(
    seeded: tuple[Database, str, dict[str, str]],
) -> None:
    db, org, ids = seeded
    for name, run_id in ids.items():
        assert _listed(db, org, id_prefix=run_id) == [run_id], name
        assert ids[name] in _listed(db, org, id_prefix=run_id[:10])
    late, mid = ids["late"], ids["mid"]
    assert _listed(db, org, id_prefix=late[:22]) == [late]
    assert _listed(db, org, id_prefix=mid[:8]) == [mid]
    assert _listed(db, org, id_prefix="f") == []
    # Filters combine; another organization sees none of them.
    assert late[:4] == mid[:4]
    assert _listed(db, org, id_prefix=late[:4], created_to=T0 + timedelta(minutes=31)) == [
        mid,
        ids["early"],
    ]
    with db.transaction() as s:
        other = s.query(Organization).filter_by(name="other").one().id
    assert _listed(db, other, id_prefix=late[:4]) == []
