"""Live run events (SSE) against real workers: order, resumption, ends, tenancy, both buses."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from werkzeug.serving import make_server

from api.app import create_app
from api.routes import events as sse_route
from engine.db.session import Database
from engine.events import PollingBus, record, since
from engine.eventstream import read_batch
from tests.support.fleet import Api, Fleet
from workers.events import RedisBus

pytestmark = pytest.mark.integration

TERMINAL = {"completed", "failed", "cancelled", "aborted_looping_risk"}
STATE_ORDER = {"pending": 0, "queued": 1, "running": 2}  # then a terminal state (3)


@dataclass
class Message:
    seq: int
    kind: str
    data: dict[str, Any]


@dataclass
class Stream:
    messages: list[Message]
    comments: list[str]
    status: int
    headers: httpx.Headers


def read_stream(
    base_url: str,
    key: str,
    run_id: str,
    *,
    last_event_id: int | None = None,
    after: int | None = None,
    stop_after: int | None = None,
    timeout: float = 60,
) -> Stream:
    """Read the SSE stream (a parser of its own, independent of the client's)."""
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    params = {"after": after} if after is not None else None
    messages: list[Message] = []
    comments: list[str] = []
    with (
        httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=timeout)) as http,
        http.stream(
            "GET", f"/v1/workflows/runs/{run_id}/events", headers=headers, params=params
        ) as r,
    ):
        if r.status_code != 200:
            r.read()
            return Stream([], [], r.status_code, r.headers)
        fields: dict[str, str] = {}
        for line in r.iter_lines():
            if line.startswith(":"):
                comments.append(line)
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif "data" in fields:
                messages.append(
                    Message(int(fields["id"]), fields["event"], json.loads(fields["data"]))
                )
                fields = {}
                if stop_after is not None and len(messages) >= stop_after:
                    break
            else:
                fields = {}
        return Stream(messages, comments, r.status_code, r.headers)


def fn(block_id: str, function: str, **params: Any) -> dict[str, Any]:
    return {"id": block_id, "type": "function", "config": {"function": function, "params": params}}


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


START = {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}}
END = {"id": "end", "type": "end"}


def chain(*blocks: dict[str, Any]) -> dict[str, Any]:
    ids = ["start", *(b["id"] for b in blocks), "end"]
    edges = [edge("start", "x", ids[1], "value")]
    edges += [edge(a, "output", b, "value") for a, b in itertools.pairwise(ids[1:])]
    return {"blocks": [START, *blocks, END], "edges": edges}


def fan_out(n: int) -> dict[str, Any]:
    """A for_each over n items: many steps claimed and settled concurrently."""
    return {
        "blocks": [
            START,
            fn("items", "count_to"),
            {"id": "each", "type": "for_each", "config": {"body": ["twice"], "collect": "twice"}},
            fn("twice", "double"),
            END,
        ],
        "edges": [
            edge("start", "x", "items", "value"),
            edge("items", "output", "each", "items"),
            edge("each", "item", "twice", "value"),
            edge("each", "results", "end", "all"),
        ],
    }


@dataclass
class Server:
    base_url: str
    key: str
    api: Api


@pytest.fixture(scope="module")
def polling_url(fleet: Fleet) -> Iterator[str]:
    """A second API process-in-thread whose listeners poll (no Redis notifications)."""
    app = create_app(fleet.settings)
    rt = app.extensions["quorum"]
    assert isinstance(rt.events, RedisBus)
    rt.events.close()
    rt.events = PollingBus()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    rt.close()


@pytest.fixture(params=["redis", "polling"])
def server(
    request: pytest.FixtureRequest, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    if request.param == "redis":
        assert isinstance(fleet.app.extensions["quorum"].events, RedisBus)  # type: ignore[union-attr]
        # Table reads only every 30 s: events arrive promptly only through notifications.
        monkeypatch.setattr(sse_route, "POLL_S", 30.0)
        base_url = fleet.base_url
    else:
        base_url = request.getfixturevalue("polling_url")
    key = fleet.new_key(f"org-events-{uuid.uuid4().hex[:8]}")
    api = Api(base_url, key)
    yield Server(base_url, key, api)
    api.close()


@pytest.fixture
def org(fleet: Fleet) -> Iterator[Server]:
    """An organization of its own on the fleet's API (notifications through Redis)."""
    key = fleet.new_key(f"org-events-{uuid.uuid4().hex[:8]}")
    api = Api(fleet.base_url, key)
    yield Server(fleet.base_url, key, api)
    api.close()


def check_order(messages: list[Message]) -> None:
    """Seqs increase, each step's states only move forward and end terminal, progress grows."""
    seqs = [m.seq for m in messages]
    assert seqs == sorted(set(seqs)), seqs
    assert {m.kind for m in messages} <= {"run", "steps"}
    states: dict[str, int] = {}
    types: dict[str, str] = {}
    done = -1
    for m in messages:
        if m.kind == "steps":
            for st in m.data["steps"]:
                rank = STATE_ORDER.get(st["status"], 3)
                assert rank >= states.get(st["id"], -1), (st, states)
                states[st["id"]] = rank
                types[st["id"]] = st["block_type"]
        else:
            progress = m.data["progress"]
            assert progress["steps_done"] >= done
            done = progress["steps_done"]
    assert states
    unfinished = {i: types[i] for i, rank in states.items() if rank != 3}
    assert unfinished == {}, unfinished


def test_events_arrive_in_order_and_end_with_the_run(server: Server) -> None:
    wf = server.api.create_workflow(chain(fn("a", "double"), fn("b", "slow", seconds=0.5)))
    run = server.api.start_run(wf["id"], {"x": 4})
    started = time.monotonic()
    stream = read_stream(server.base_url, server.key, run["id"], timeout=20)
    # Without notifications the Redis variant would read the table only every 15 s.
    assert time.monotonic() - started < 8
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    check_order(stream.messages)
    last = stream.messages[-1]
    assert last.kind == "run" and last.data["status"] == "completed", last
    assert last.data["progress"] == {"steps_total": 4, "steps_done": 4}
    statuses = [m.data["status"] for m in stream.messages if m.kind == "run"]
    assert statuses[0] == "not_started" and "running" in statuses
    seen = {st["step_id"] for m in stream.messages if m.kind == "steps" for st in m.data["steps"]}
    assert seen == {"start", "a", "b", "end"}
    assert server.api.get(f"/v1/workflows/runs/{run['id']}").json()["status"] == "completed"


def test_reconnect_resumes_exactly_after_the_last_seen_event(server: Server) -> None:
    graph = chain(fn("a", "double"), fn("b", "slow", seconds=0.3), fn("c", "slow", seconds=0.3))
    run = server.api.start_run(server.api.create_workflow(graph)["id"], {"x": 1})
    first = read_stream(server.base_url, server.key, run["id"], stop_after=3)
    assert len(first.messages) == 3
    resumed = read_stream(
        server.base_url, server.key, run["id"], last_event_id=first.messages[-1].seq
    )
    live = first.messages + resumed.messages
    full = read_stream(server.base_url, server.key, run["id"])
    assert [m.seq for m in live] == [m.seq for m in full.messages]  # no gap, no repeat
    assert live == full.messages
    assert live[-1].data["status"] == "completed"
    # ?after= is the same resume point; Last-Event-ID wins over it.
    k = full.messages[4].seq
    by_query = read_stream(server.base_url, server.key, run["id"], after=k)
    assert by_query.messages == full.messages[5:]
    both = read_stream(server.base_url, server.key, run["id"], after=0, last_event_id=k)
    assert both.messages == full.messages[5:]


def test_a_terminal_run_replays_and_ends(server: Server) -> None:
    run = server.api.start_run(server.api.create_workflow(chain(fn("a", "double")))["id"], {"x": 2})
    server.api.wait_run(run["id"])
    started = time.monotonic()
    full = read_stream(server.base_url, server.key, run["id"], timeout=5)
    check_order(full.messages)
    assert full.messages[-1].data["status"] == "completed"
    # Past the end: nothing to replay, and the stream still ends at once.
    tail = read_stream(
        server.base_url, server.key, run["id"], last_event_id=full.messages[-1].seq, timeout=5
    )
    assert tail.status == 200 and tail.messages == []
    assert time.monotonic() - started < 5


def test_a_failed_and_a_cancelled_run_end_the_stream(org: Server) -> None:
    api, key = org.api, org.key
    failing = api.start_run(api.create_workflow(chain(fn("a", "explode")))["id"], {"x": 1})
    stream = read_stream(org.base_url, key, failing["id"], timeout=20)
    assert stream.messages[-1].data["status"] == "failed"
    assert stream.messages[-1].data["termination_reason"] == "execution_error"

    slow = api.start_run(api.create_workflow(chain(fn("a", "slow", seconds=5)))["id"], {"x": 1})
    api.wait_run(slow["id"], until=lambda r: r["status"] == "running")
    timer = threading.Timer(0.5, lambda: api.post(f"/v1/workflows/runs/{slow['id']}/cancel"))
    timer.start()
    started = time.monotonic()
    stream = read_stream(org.base_url, key, slow["id"], timeout=20)
    timer.join()
    assert time.monotonic() - started < 4
    assert stream.messages[-1].data["status"] == "cancelled"


def test_events_have_no_gap_under_concurrent_steps(org: Server) -> None:
    """Many steps claimed and settled at once: the live stream equals the stored record."""
    api, key = org.api, org.key
    for _ in range(2):
        run = api.start_run(api.create_workflow(fan_out(30))["id"], {"x": 30})
        live = read_stream(org.base_url, key, run["id"], timeout=60)
        assert live.messages[-1].data["status"] == "completed", live.messages[-1]
        replay = read_stream(org.base_url, key, run["id"])
        assert live.messages == replay.messages
        check_order(live.messages)


def test_another_organizations_run_is_not_found(api: Api, fleet: Fleet) -> None:
    run = api.start_run(api.create_workflow(chain(fn("a", "double")))["id"], {"x": 1})
    other = fleet.new_key(f"org-other-{uuid.uuid4().hex[:8]}")
    stream = read_stream(fleet.base_url, other, run["id"])
    assert stream.status == 404
    assert stream.headers["content-type"] == "application/problem+json"
    assert read_stream(fleet.base_url, other, "0" * 24).status == 404
    r = httpx.get(f"{fleet.base_url}/v1/workflows/runs/{run['id']}/events")
    assert r.status_code == 401


def test_bad_resume_points_are_refused(api: Api) -> None:
    run = api.start_run(api.create_workflow(chain(fn("a", "double")))["id"], {"x": 1})
    path = f"/v1/workflows/runs/{run['id']}/events"
    r = api.get(path, headers={"Last-Event-ID": "abc"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]
    assert api.get(path, params={"after": -1}).status_code == 422
    assert api.get(path, params={"nope": 1}).status_code == 422


def test_heartbeats_and_the_lifetime_bound(org: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    api, key = org.api, org.key
    monkeypatch.setattr(sse_route, "HEARTBEAT_S", 0.3)
    monkeypatch.setattr(sse_route, "MAX_STREAM_S", 2.0)
    run = api.start_run(api.create_workflow(chain(fn("a", "slow", seconds=6)))["id"], {"x": 1})
    started = time.monotonic()
    stream = read_stream(org.base_url, key, run["id"], timeout=10)
    took = time.monotonic() - started
    assert 1.5 < took < 5, took  # ended by the bound, not by the run
    assert stream.comments.count(": keepalive") >= 3
    assert stream.messages and stream.messages[-1].data.get("status") != "completed"
    # The client resumes where the bounded stream stopped.
    monkeypatch.setattr(sse_route, "MAX_STREAM_S", 3600.0)
    rest = read_stream(org.base_url, key, run["id"], last_event_id=stream.messages[-1].seq)
    assert rest.messages[-1].data["status"] == "completed"
    assert rest.messages[0].seq > stream.messages[-1].seq


def test_redis_subscription_waits_for_a_notification(redis_base_url: str) -> None:
    bus = RedisBus(redis_base_url)
    try:
        started = time.monotonic()
        bus.wait("6b02c91cc48b071f58f281e1", 0.6)
        assert time.monotonic() - started >= 0.55  # not woken by its own subscription
        with bus.listen("6b02c91cc48b071f58f281e1") as subscription:
            bus.notify(["6b02c91cc48b071f58f281e1"])  # sent between waits: not lost
            started = time.monotonic()
            subscription.wait(5)
            assert time.monotonic() - started < 1
            timer = threading.Timer(0.2, bus.notify, args=(["6b02c91cc48b071f58f281e1"],))
            timer.start()
            started = time.monotonic()
            subscription.wait(5)
            assert 0.1 < time.monotonic() - started < 2
            timer.join()
    finally:
        bus.close()


def test_a_number_drawn_earlier_but_committed_later_is_not_skipped(
    org: Server, fleet: Fleet
) -> None:
    """Writer A draws seq n and commits after writer B's n+1: the reader waits for A."""
    run = org.api.start_run(org.api.create_workflow(chain(fn("a", "double")))["id"], {"x": 1})
    org.api.wait_run(run["id"])
    db = Database(fleet.settings)
    try:
        with db.transaction() as s:
            after = since(s, run["id"], 0)[-1].seq
        for commit_a, settle_s, expected in ((True, 5.0, ["a", "b"]), (False, 0.3, ["b"])):
            slow = db.sessions()
            slow.begin()
            record(slow, run["id"], "steps", {"steps": [], "writer": "a"})  # draws seq n
            with db.transaction() as s:
                record(s, run["id"], "steps", {"steps": [], "writer": "b"})  # n+1, committed
            timer = threading.Timer(0.3, slow.commit if commit_a else lambda: None)
            timer.start()
            try:
                batch = read_batch(db, run["id"], after, settle_s=settle_s)
            finally:
                timer.join()
                if not commit_a:
                    slow.rollback()  # a writer stuck past settle_s is not waited for forever
                slow.close()
            assert [e.data["writer"] for e in batch.events] == expected
            assert batch.run_terminal
            after = batch.events[-1].seq
    finally:
        db.close()
