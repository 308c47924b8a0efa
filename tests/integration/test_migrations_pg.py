"""The Alembic migrations reproduce the ORM model exactly on PostgreSQL (JSONB variant)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.dialects.postgresql import JSONB

from engine.db import migrate
from engine.db.models import Base
from engine.db.session import make_engine
from tests.support.old_rows import check_migration_0006
from tests.support.services import require_postgres, temp_database

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temp_database(require_postgres()) as url:
        yield url


def test_upgrade_matches_models(pg_url: str) -> None:
    assert migrate.current(pg_url) is None

    migrate.upgrade(pg_url)
    migrate.upgrade(pg_url)  # a second run is a no-op

    engine = make_engine(pg_url, pool_size=1)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        columns = {c["name"]: c["type"] for c in inspect(engine).get_columns("runs")}
        assert isinstance(columns["config"], JSONB)
    finally:
        engine.dispose()
    assert migrate.current(pg_url) == migrate.head()


def test_0006_rewrites_stored_events_and_iterations_and_back(pg_url: str) -> None:
    check_migration_0006(pg_url)
