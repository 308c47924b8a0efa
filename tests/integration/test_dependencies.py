"""Dependencies going down: the broker, the database, and the API dying mid-request.

PostgreSQL and Redis are reached through TCP proxies that the tests cut and restore,
so an outage is real for the API and the workers without stopping the shared servers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.support.fleet import Api, Fleet
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_proxy(module_database: str) -> Iterator[TcpProxy]:
    url = make_url(module_database)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def redis_proxy(module_broker: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", int(module_broker.split(":")[2].split("/")[0]))
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def fleet_extra_env(
    module_database: str, module_broker: str, pg_proxy: TcpProxy, redis_proxy: TcpProxy
) -> dict[str, str]:
    return {
        "QUORUM_DATABASE_URL": pg_proxy.url_for(module_database, 5432),
        "QUORUM_BROKER_URL": redis_proxy.url_for(module_broker, 6379),
        "QUORUM_OUTBOX_AFTER_S": "1",
    }


@pytest.fixture(scope="module")
def beat(fleet: Fleet) -> Any:
    return fleet.start_beat()


GRAPH = {
    "blocks": [
        {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
        {"id": "d", "type": "function", "config": {"function": "double"}},
        {"id": "end", "type": "end"},
    ],
    "edges": [
        {"source": "start", "source_handle": "x", "target": "d", "target_handle": "value"},
        {"source": "d", "source_handle": "output", "target": "end", "target_handle": "y"},
    ],
}


def test_broker_down_post_answers_202_pending_and_completes_later(
    api: Api, redis_proxy: TcpProxy, beat: Any
) -> None:
    wf = api.create_workflow(GRAPH)
    redis_proxy.cut()
    try:
        t0 = time.monotonic()
        r = api.post("/v1/workflows/runs", {"workflow_id": wf["id"], "inputs": {"x": 4}})
        elapsed = time.monotonic() - t0
        assert r.status_code == 202, r.text
        assert elapsed < 5, elapsed
        run_id = r.json()["id"]
        steps = api.steps(run_id)
        assert [s["lifecycle"]["status"] for s in steps] == ["pending"]
        ready = api.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"].startswith("unavailable")
    finally:
        redis_proxy.restore()
    run = api.wait_run(run_id, timeout=60)
    assert run["status"] == "completed"
    assert run["io_pairs"][0]["output"] == {"y": 8}


def test_database_down_answers_503_and_recovers(api: Api, pg_proxy: TcpProxy) -> None:
    wf = api.create_workflow(GRAPH)
    pg_proxy.cut()
    try:
        t0 = time.monotonic()
        r = api.get(f"/v1/workflows/{wf['id']}")
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "Traceback" not in r.text
        assert time.monotonic() - t0 < 10
        assert api.get("/readyz").status_code == 503
        assert api.get("/healthz").status_code == 200
    finally:
        pg_proxy.restore()
    deadline = time.monotonic() + 20
    while api.get(f"/v1/workflows/{wf['id']}").status_code != 200:
        assert time.monotonic() < deadline, "the API did not recover"
        time.sleep(0.2)


def test_workers_reconnect_after_a_database_outage(api: Api, pg_proxy: TcpProxy) -> None:
    graph = {
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
            {
                "id": "slow",
                "type": "function",
                "config": {"function": "slow", "params": {"seconds": 1.5}},
            },
            {"id": "d", "type": "function", "config": {"function": "double"}},
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"source": "start", "source_handle": "x", "target": "slow", "target_handle": "value"},
            {"source": "slow", "source_handle": "output", "target": "d", "target_handle": "value"},
            {"source": "d", "source_handle": "output", "target": "end", "target_handle": "y"},
        ],
    }
    wf = api.create_workflow(graph)
    run_id = api.start_run(wf["id"], {"x": 5})["id"]
    api.wait_run(run_id, until=lambda r: r["status"] == "running")
    pg_proxy.cut()
    time.sleep(3)
    pg_proxy.restore()
    run = api.wait_run(run_id, timeout=90)
    assert run["status"] == "completed", run
    assert run["io_pairs"][0]["output"] == {"y": 10}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_api_crash_between_commit_and_publish_loses_nothing(
    api: Api, fleet: Fleet, beat: Any
) -> None:
    wf = api.create_workflow(GRAPH)
    port = _free_port()
    fleet.start_api_process(port, {"QUORUM_FAULT_POINTS": "api.crash_after_commit"})
    key = api.http.headers["Authorization"]
    base = f"http://127.0.0.1:{port}"
    with (
        httpx.Client(base_url=base, headers={"Authorization": key}) as c,
        pytest.raises(httpx.TransportError),
    ):
        c.post("/v1/workflows/runs", json={"workflow_id": wf["id"], "inputs": {"x": 21}})
    runs = api.get("/v1/workflows/runs", params={"workflow_id": wf["id"]}).json()["data"]
    assert len(runs) == 1  # committed before the crash
    run = api.wait_run(runs[0]["id"], timeout=60)
    assert run["status"] == "completed"
    assert run["io_pairs"][0]["output"] == {"y": 42}
