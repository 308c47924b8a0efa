"""Integration fixtures: real PostgreSQL, real Redis, real Celery worker processes.

Isolation: every test module gets its own PostgreSQL database (cloned from a migrated
template), its own flushed Redis database and its own worker processes; every test
gets its own organization and API key, so tests never see each other's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine.db.migrate import upgrade
from tests.support.fleet import Api, Fleet, fleet_env, running_fleet
from tests.support.services import lease_redis_db, require_postgres, require_redis


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return require_postgres()


@pytest.fixture(scope="session")
def redis_base_url() -> str:
    return require_redis()


def _admin_exec(admin_url: str, sql: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> Iterator[str]:
    name = f"quorum_tpl_{uuid.uuid4().hex[:10]}"
    _admin_exec(pg_admin_url, f'CREATE DATABASE "{name}"')
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield name
    _admin_exec(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def module_database(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    name = f"quorum_it_{uuid.uuid4().hex[:10]}"
    _admin_exec(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    _admin_exec(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def module_broker(redis_base_url: str) -> Iterator[str]:
    # A database of its own, leased so that concurrent test sessions on one Redis never
    # flush each other's queues.
    with lease_redis_db(redis_base_url) as broker:
        client = redis.Redis.from_url(broker)
        client.flushdb()
        yield broker
        client.flushdb()
        client.close()


@pytest.fixture(scope="module")
def fleet_extra_env() -> dict[str, str]:
    """Override in a test module to configure its workers (provider, limits...)."""
    return {}


@pytest.fixture(scope="module")
def fleet(
    module_database: str,
    module_broker: str,
    tmp_path_factory: pytest.TempPathFactory,
    fleet_extra_env: dict[str, str],
) -> Iterator[Fleet]:
    data_dir: Path = tmp_path_factory.mktemp("fleet")
    env = fleet_env(module_database, module_broker, data_dir, **fleet_extra_env)
    with running_fleet(env, workers=2) as f:
        f.serve()
        yield f


@pytest.fixture
def api(fleet: Fleet, request: pytest.FixtureRequest) -> Iterator[Api]:
    client = Api(fleet.base_url, fleet.new_key(f"org-{request.node.name}-{uuid.uuid4().hex[:6]}"))
    yield client
    client.close()
