"""Hostile tenants' inputs, replayed against a real ``quorum api`` process and workers.

Each test is one attack of the review (issue 13): a schema that names a URL or a file, a
pattern that backtracks, a reused ``Idempotency-Key``, a crash or a lost database
connection between the work and its record, a forged comment author.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from engine.db.models import BlockExecution, Run
from engine.db.session import Database
from tests.support.fleet import Api, Fleet, Worker
from tests.support.hostile import Listener, api_process, stop_api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(fleet: Fleet) -> Iterator[tuple[Worker, str]]:
    yield api_process(fleet)


@pytest.fixture
def client(api: Api, served: tuple[Worker, str]) -> Iterator[Api]:
    """The test's organization, talking to the ``quorum api`` process."""
    c = Api(served[1], api.http.headers["Authorization"].split()[1])
    yield c
    c.close()


@pytest.fixture(scope="module")
def db(fleet: Fleet) -> Iterator[Database]:
    database = Database(fleet.settings)
    yield database
    database.close()


def asking(schema: dict[str, Any] | None) -> dict[str, Any]:
    config = {} if schema is None else {"schema": schema}
    return {
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"q": {"type": "json"}}}},
            {"id": "ask", "type": "human_input", "config": config},
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"source": "start", "source_handle": "q", "target": "ask", "target_handle": "prompt"},
            {"source": "ask", "source_handle": "response", "target": "end", "target_handle": "a"},
        ],
    }


def waiting(client: Api, schema: dict[str, Any] | None) -> str:
    wf = client.create_workflow(asking(schema))
    run = client.start_run(wf["id"], {"q": "?"})
    client.wait_run(run["id"], until=lambda r: r["status"] == "waiting_for_user_input")
    return str(run["id"])


def test_a_schema_naming_a_url_or_a_file_is_refused_and_never_fetched(
    client: Api, db: Database, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"const": "TOP-SECRET-CONTENT"}))
    missing = tmp_path / "missing.json"
    with Listener() as listener:
        for ref in (listener.url, secret.as_uri(), missing.as_uri()):
            r = client.post("/v1/workflows", {"name": "evil", **asking({"$ref": ref})})
            assert r.status_code == 422, r.text
            assert "leaves the schema" in r.text and "TOP-SECRET" not in r.text
        # A run stored before the checks (its config written by hand) is evaluated safely.
        run_id = waiting(client, {"type": "string"})
        for ref in (listener.url, secret.as_uri(), missing.as_uri()):
            config = _with_schema(db, run_id, {"$ref": ref})
            with db.transaction() as s:
                s.execute(update(Run).where(Run.id == run_id).values(config=config))
            r = client.post(f"/v1/workflows/runs/{run_id}/input", {"input": "x"}, timeout=10)
            assert r.status_code == 422, r.text
            assert "TOP-SECRET" not in r.text
        time.sleep(0.5)
        assert listener.calls == []


def _with_schema(db: Database, run_id: str, schema: dict[str, Any]) -> dict[str, Any]:
    with db.transaction() as s:
        config = s.scalar(select(Run.config).where(Run.id == run_id))
    assert config is not None
    for block in config["blocks"]:
        if block["id"] == "ask":
            block["config"] = {"schema": schema}
    return dict(config)


def test_a_backtracking_pattern_is_answered_within_50_ms(client: Api) -> None:
    run_id = waiting(client, {"type": "string", "pattern": "^(a+)+$"})
    # Python's re needs about 2**40 steps for this one; RE2 is linear.
    elapsed: list[float] = []
    for _ in range(5):
        started = time.perf_counter()
        r = client.post(f"/v1/workflows/runs/{run_id}/input", {"input": "a" * 40 + "!"}, timeout=10)
        elapsed.append(time.perf_counter() - started)
        assert r.status_code == 422 and "does not match" in r.text, r.text
    assert statistics.median(elapsed) < 0.05, elapsed
    r = client.post(f"/v1/workflows/runs/{run_id}/input", {"input": "aaaa"})
    assert r.status_code == 202, r.text


def test_a_reused_key_with_another_body_is_422(client: Api) -> None:
    wf = client.create_workflow(asking(None))
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"workflow_id": wf["id"], "inputs": {"q": 1}}
    first = client.post("/v1/workflows/runs", body, headers=key)
    assert first.status_code == 202, first.text
    again = client.post("/v1/workflows/runs", body, headers=key)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    other = client.post("/v1/workflows/runs", {**body, "inputs": {"q": 999}}, headers=key)
    assert other.status_code == 422, other.text
    assert other.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    runs = client.get("/v1/workflows/runs", params={"workflow_id": wf["id"]}).json()["data"]
    assert [r["id"] for r in runs] == [first.json()["id"]]


def test_a_crash_after_the_commit_then_a_retry_gives_the_first_run(
    client: Api, fleet: Fleet
) -> None:
    wf = client.create_workflow(asking(None))
    crashing, base = api_process(fleet, {"QUORUM_FAULT_POINTS": "api.crash_after_commit"})
    key = {"Idempotency-Key": f"crash-{uuid.uuid4()}"}
    body = {"workflow_id": wf["id"], "inputs": {"q": 1}}
    auth = {"Authorization": client.http.headers["Authorization"]}
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{base}/v1/workflows/runs", json=body, headers={**auth, **key}, timeout=10)
    stop_api(fleet, crashing)
    # The run and its key's record committed together: the retry gets that run at once
    # (before: 409 "in progress" for five minutes, then a second run).
    retry = client.post("/v1/workflows/runs", body, headers=key)
    assert retry.status_code == 202, retry.text
    assert retry.headers.get("Idempotent-Replayed") == "true"
    runs = client.get("/v1/workflows/runs", params={"workflow_id": wf["id"]}).json()["data"]
    assert [r["id"] for r in runs] == [retry.json()["id"]]


LINEAR = {
    "blocks": [
        {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
        {"id": "twice", "type": "function", "config": {"function": "double"}},
        {"id": "end", "type": "end"},
    ],
    "edges": [
        {"source": "start", "source_handle": "x", "target": "twice", "target_handle": "value"},
        {"source": "twice", "source_handle": "output", "target": "end", "target_handle": "y"},
    ],
}


def test_a_lost_database_connection_after_the_publish_never_makes_two_executions(
    client: Api, fleet: Fleet, db: Database
) -> None:
    wf = client.create_workflow(LINEAR)
    run = client.wait_run(client.start_run(wf["id"], {"x": 2})["id"])
    losing, base = api_process(fleet, {"QUORUM_FAULT_POINTS": "api.backend_lost_before_mark"})
    key = {"Idempotency-Key": f"lost-{uuid.uuid4()}"}
    body = {"run_id": run["id"], "block_id": "twice"}
    auth = {"Authorization": client.http.headers["Authorization"]}
    try:
        with httpx.Client(base_url=base, headers=auth, timeout=10) as c:
            lost = c.post("/v1/workflows/blocks/executions", json=body, headers=key)
        assert lost.status_code == 503, lost.text
    finally:
        stop_api(fleet, losing)
    # Committed and published before the connection died: a retry returns that execution,
    # and no other key is held up.
    retry = client.post("/v1/workflows/blocks/executions", body, headers=key)
    assert retry.status_code == 202, retry.text
    assert retry.headers.get("Idempotent-Replayed") == "true"
    done = client.wait_execution(retry.json()["id"])
    assert done["lifecycle"]["status"] == "completed"
    fresh = client.post("/v1/workflows/blocks/executions", body, headers={"Idempotency-Key": "n"})
    assert fresh.status_code == 202 and "Idempotent-Replayed" not in fresh.headers
    with db.transaction() as s:
        count = s.scalar(
            select(func.count())
            .select_from(BlockExecution)
            .where(BlockExecution.run_id == run["id"])
        )
    assert count == 2  # the retried one once, and the fresh one


def test_a_comment_author_is_the_key_that_wrote_it(client: Api) -> None:
    run_id = waiting(client, None)
    r = client.post(
        f"/v1/workflows/runs/{run_id}/comments", {"text": "approve", "author": "admin@other-org"}
    )
    assert r.status_code == 201, r.text
    token = client.http.headers["Authorization"].split()[1]
    prefix = "_".join(token.split("_")[:2])
    assert r.json()["author"] == prefix
    assert r.json()["display_name"] == "admin@other-org"
    comments = client.get(f"/v1/workflows/runs/{run_id}").json()["comments"]
    assert [(c["author"], c["display_name"]) for c in comments] == [(prefix, "admin@other-org")]


def test_every_post_records_its_key_with_its_work(client: Api) -> None:
    """Repeats with the key get the first answer, where a bare repeat would be refused."""

    def twice(path: str, body: Any = None) -> dict[str, Any]:
        key = {"Idempotency-Key": f"every-{uuid.uuid4()}"}
        first = client.post(path, body, headers=key)
        assert 200 <= first.status_code < 300, (path, first.text)
        again = client.post(path, body, headers=key)
        assert again.headers.get("Idempotent-Replayed") == "true", (path, again.text)
        assert again.content == first.content
        return dict(first.json())

    run_id = waiting(client, None)
    base = f"/v1/workflows/runs/{run_id}"
    comment = twice(f"{base}/comments", {"text": "once"})
    assert [c["id"] for c in client.get(base).json()["comments"]] == [comment["id"]]
    twice(f"{base}/input", {"input": "yes"})  # a bare repeat: 409, not waiting any more
    client.wait_run(run_id)
    fork = twice(f"{base}/checkpoint", {"resume_turn_index": 1, "input": "again"})
    forks = client.get("/v1/workflows/runs", params={"original_run_id": run_id}).json()["data"]
    assert [f["id"] for f in forks] == [fork["id"]]
    other = waiting(client, None)
    assert twice(f"/v1/workflows/runs/{other}/cancel")["status"] == "cancelled"
