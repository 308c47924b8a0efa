"""Creating a block execution on PostgreSQL: what it costs, what it answers, what it leaves.

The API runs in this process with a dispatcher the tests control (no broker, no worker
processes); an in-process orchestrator runs what it records. Also: API keys are cached,
and a revoked key is refused at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, update

from api.app import create_app
from api.runtime import ApiRuntime
from engine.auth import issue_key, revoke_key
from engine.clock import utcnow
from engine.db.models import ApiKey, BlockExecution
from engine.db.session import Database
from engine.execute import Toolbox
from engine.functions import build_registry
from engine.outbox import sweep
from engine.ports import Work, WorkKind
from engine.providers.local import LocalProvider
from engine.settings import Settings
from engine.worker.entry import Worker

pytestmark = pytest.mark.integration

EXECUTIONS = "/v1/workflows/blocks/executions"
GRAPH = {
    "blocks": [
        {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
        {"id": "f", "type": "function", "config": {"function": "noop"}},
        {"id": "end", "type": "end"},
    ],
    "edges": [
        {"source": "start", "source_handle": "x", "target": "f", "target_handle": "value"},
        {"source": "f", "source_handle": "output", "target": "end", "target_handle": "y"},
    ],
}


@dataclass
class Broker:
    """Records what the API publishes; ``down`` refuses it; ``on_publish`` runs first."""

    work: list[Work] = field(default_factory=list)
    down: bool = False
    on_publish: Callable[[Sequence[Work]], None] | None = None

    def dispatch(self, work: Sequence[Work]) -> None:
        if self.down:
            raise ConnectionError("the broker is down")
        if self.on_publish is not None:
            self.on_publish(work)
        self.work.extend(work)

    def revoke(self, work: Sequence[Work]) -> None:
        pass


@dataclass
class Env:
    app: Flask
    db: Database
    broker: Broker
    orch: Worker
    run_id: str
    key: str

    @property
    def runtime(self) -> ApiRuntime:
        rt: ApiRuntime = self.app.extensions["quorum"]
        return rt

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def drain(self) -> None:
        while self.broker.work:
            w = self.broker.work.pop(0)
            {
                WorkKind.STEP: self.orch.run_step,
                WorkKind.EXECUTION: self.orch.run_execution,
                WorkKind.SAMPLE: self.orch.run_sample,
            }[w.kind](w.id)

    def new_key(self) -> str:
        with self.db.transaction() as s:
            return issue_key(s, f"org-{uuid.uuid4().hex[:8]}").key

    def warm(self, key: str) -> None:
        """Authenticate ``key`` until the process's cache holds it."""
        cache = self.runtime.key_cache()
        assert cache is not None
        deadline = time.monotonic() + 10
        client = self.client()
        while cache.get(key) is None:
            assert time.monotonic() < deadline, "the key cache never went live"
            assert client.get("/v1/workflows", headers=self.auth(key)).status_code == 200
            time.sleep(0.02)


def make_env(settings: Settings) -> Iterator[Env]:
    broker = Broker()
    app = create_app(settings, dispatcher=broker)
    db: Database = app.extensions["quorum"].db
    orch = Worker(
        db=db,
        dispatcher=broker,
        tools=Toolbox(functions=build_registry(""), provider=LocalProvider()),
        settings=settings,
        worker="test:1",
        holder_alive=lambda holder: None,
    )
    with db.transaction() as s:
        key = issue_key(s, f"org-{uuid.uuid4().hex[:8]}").key
    client = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    wf = client.post("/v1/workflows", json={"name": "noop", **GRAPH}, headers=auth)
    assert wf.status_code == 201, wf.get_data(True)
    run = client.post(
        "/v1/workflows/runs", json={"workflow_id": wf.json["id"], "inputs": {"x": 1}}, headers=auth
    )
    assert run.status_code == 202, run.get_data(True)
    env = Env(app=app, db=db, broker=broker, orch=orch, run_id=run.json["id"], key=key)
    env.drain()
    done = client.get(f"/v1/workflows/runs/{env.run_id}", headers=auth).json
    assert done["status"] == "completed", done
    try:
        yield env
    finally:
        orch.tools.provider.close()
        app.extensions["quorum"].close()


@pytest.fixture(scope="module")
def env(
    module_database: str, module_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    data_dir: Path = tmp_path_factory.mktemp("create")
    settings = Settings(
        database_url=module_database,
        broker_url=module_broker,
        data_dir=str(data_dir),
        rate_limit_per_minute=0,
        auth_cache_s=0.5,
    )
    yield from make_env(settings)


@pytest.fixture(autouse=True)
def broker_up(env: Env) -> Iterator[None]:
    env.broker.work.clear()
    env.broker.down = False
    env.broker.on_publish = None
    yield
    env.broker.down = False
    env.broker.on_publish = None


def statements_of(env: Env, fn: Callable[[], Any]) -> tuple[list[str], Any]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(env.db.engine, "before_cursor_execute", count)
    try:
        result = fn()
    finally:
        event.remove(env.db.engine, "before_cursor_execute", count)
    return seen, result


def post(env: Env, **body: Any) -> Any:
    return env.client().post(
        EXECUTIONS, json={"run_id": env.run_id, "block_id": "f", **body}, headers=env.auth()
    )


def test_a_post_is_four_statements_and_answers_what_is_stored(env: Env) -> None:
    env.warm(env.key)
    sql, r = statements_of(env, lambda: post(env))
    assert r.status_code == 202, r.get_data(True)
    # The run with its workflow, the block's steps, the INSERT, the "queued" mark: the key
    # came from the cache and nothing is read back.
    assert len(sql) == 4, sql
    assert sql[2].startswith("INSERT INTO block_executions")
    assert sql[3].startswith("UPDATE block_executions")
    body = r.json
    assert body["lifecycle"]["status"] == "queued"
    assert env.broker.work == [Work(kind=WorkKind.EXECUTION, id=body["id"])]
    stored = env.client().get(f"{EXECUTIONS}/{body['id']}", headers=env.auth())
    assert stored.json == body
    # A second POST reuses the parsed graphs and drift check, and reads the run, its
    # workflow and the block's steps in one statement; then the INSERT and the mark.
    again, r2 = statements_of(env, lambda: post(env))
    assert r2.status_code == 202 and len(again) == 3, again
    assert again[1].startswith("INSERT INTO block_executions")
    assert again[2].startswith("UPDATE block_executions")
    assert r2.json["source_step_id"] == body["source_step_id"] is not None


def test_broker_down_answers_pending_and_the_outbox_publishes_later(env: Env) -> None:
    env.broker.down = True
    r = post(env)
    assert r.status_code == 202, r.get_data(True)
    assert r.json["lifecycle"] == {"status": "pending"}
    stored = env.client().get(f"{EXECUTIONS}/{r.json['id']}", headers=env.auth())
    assert stored.json == r.json  # committed as answered
    env.broker.down = False
    assert sweep(env.db, env.broker, older_than_s=0) >= 1
    assert Work(kind=WorkKind.EXECUTION, id=r.json["id"]) in env.broker.work
    later = env.client().get(f"{EXECUTIONS}/{r.json['id']}", headers=env.auth()).json
    assert later["lifecycle"]["status"] == "queued"
    env.drain()
    done = env.client().get(f"{EXECUTIONS}/{r.json['id']}", headers=env.auth()).json
    assert done["lifecycle"]["status"] == "completed"


def test_the_row_is_committed_before_its_message_is_published(env: Env) -> None:
    seen: list[str | None] = []

    def check(work: Sequence[Work]) -> None:
        # What a worker would find on receiving the message: the committed row.
        with env.db.transaction() as s:
            seen.append(
                s.scalar(select(BlockExecution.state).where(BlockExecution.id == work[0].id))
            )

    env.broker.on_publish = check
    assert post(env).status_code == 202
    assert seen == ["pending"]


def test_a_worker_faster_than_the_mark_leaves_the_answer_queued(env: Env) -> None:
    def run_at_once(work: Sequence[Work]) -> None:
        for w in work:
            env.orch.run_execution(w.id)

    env.broker.on_publish = run_at_once
    r = post(env)
    assert r.status_code == 202, r.get_data(True)
    body = r.json
    assert body["lifecycle"]["status"] == "queued"
    assert body["handle_outputs"] is None and body["completed_at"] is None
    stored = env.client().get(f"{EXECUTIONS}/{body['id']}", headers=env.auth()).json
    assert stored["lifecycle"]["status"] == "completed"


def test_refused_posts_write_nothing(env: Env) -> None:
    with env.db.transaction() as s:
        before = s.scalar(select(BlockExecution.id).order_by(BlockExecution.id.desc()).limit(1))
    for body, status in [
        ({"block_id": "nope"}, 404),
        ({"block_id": "f", "n_consensus": 3}, 422),
        ({"block_id": "f", "step_id": "f~9"}, 422),
        ({"block_id": "start", "run_id": "0" * 24}, 404),
    ]:
        r = env.client().post(EXECUTIONS, json={"run_id": env.run_id, **body}, headers=env.auth())
        assert r.status_code == status, (body, r.get_data(True))
        assert r.mimetype == "application/problem+json"
    with env.db.transaction() as s:
        after = s.scalar(select(BlockExecution.id).order_by(BlockExecution.id.desc()).limit(1))
    assert after == before
    assert env.broker.work == []


def test_a_cached_key_revoked_is_refused_at_once(env: Env) -> None:
    key = env.new_key()
    env.warm(key)
    prefix = "_".join(key.split("_")[:2])
    with env.db.transaction() as s:
        assert revoke_key(s, prefix)
    t0 = time.monotonic()
    r = env.client().get("/v1/workflows", headers=env.auth(key))
    # The NOTIFY reaches the listener within milliseconds of the commit; the margin only
    # absorbs a loaded machine, far below the cache's time to live.
    while r.status_code == 200 and time.monotonic() - t0 < 0.25:
        time.sleep(0.01)
        r = env.client().get("/v1/workflows", headers=env.auth(key))
    assert r.status_code == 401, r.get_data(True)
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_a_key_changed_by_hand_is_refused_within_the_time_to_live(env: Env) -> None:
    key = env.new_key()
    env.warm(key)
    prefix = "_".join(key.split("_")[:2])
    with env.db.transaction() as s:  # no NOTIFY: only the time to live bounds this
        s.execute(update(ApiKey).where(ApiKey.prefix == prefix).values(revoked_at=utcnow()))
    time.sleep(0.55)
    r = env.client().get("/v1/workflows", headers=env.auth(key))
    assert r.status_code == 401
