"""The Python client (sync and asyncio) against the real API, workers and database."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from quorum.client import (
    AsyncClient,
    BlockExecution,
    Client,
    Conflict,
    ConnectionFailed,
    Event,
    NotFound,
    Page,
    RateLimited,
    Run,
    ServiceUnavailable,
    Step,
    Unauthorized,
    ValidationFailed,
    WaitTimeout,
    Workflow,
)
from tests.support.fleet import Fleet
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


def fn(block_id: str, function: str, **params: Any) -> dict[str, Any]:
    return {"id": block_id, "type": "function", "config": {"function": function, "params": params}}


START = {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}}
END = {"id": "end", "type": "end"}
DOUBLER = {
    "blocks": [START, fn("a", "double"), fn("b", "inc"), END],
    "edges": [
        edge("start", "x", "a", "value"),
        edge("a", "output", "b", "value"),
        edge("b", "output", "end", "result"),
    ],
}
SLOW = {
    "blocks": [START, fn("a", "slow", seconds=4), END],
    "edges": [edge("start", "x", "a", "value"), edge("a", "output", "end", "result")],
}
ASK = {
    "blocks": [
        START,
        {"id": "ask", "type": "human_input"},
        fn("decide", "identity"),
        END,
    ],
    "edges": [
        edge("start", "x", "ask", "prompt"),
        edge("ask", "response", "decide", "value"),
        edge("decide", "output", "end", "decision"),
    ],
}
PAGES = {
    "blocks": [
        START,
        {"id": "pages", "type": "for_each", "config": {"body": ["double"], "collect": "double"}},
        fn("double", "double"),
        END,
    ],
    "edges": [
        edge("start", "x", "pages", "items"),
        edge("pages", "item", "double", "value"),
        edge("pages", "results", "end", "results"),
    ],
}


@pytest.fixture
def key(fleet: Fleet) -> str:
    return fleet.new_key(f"org-client-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def client(fleet: Fleet, key: str) -> Iterator[Client]:
    with Client(fleet.base_url, key, timeout=20) as c:
        yield c


def test_workflows(client: Client) -> None:
    wf = client.workflows.create("doubler", DOUBLER["blocks"], DOUBLER["edges"], description="d")
    assert isinstance(wf, Workflow)
    assert wf.name == "doubler" and wf.latest_version == 0
    assert wf.versions is not None and [v.number for v in wf.versions] == [0]
    assert wf.raw["id"] == wf.id and wf.extra == {}
    assert client.workflows.get(wf.id) == wf
    page = client.workflows.list(limit=10)
    assert isinstance(page, Page) and [w.id for w in page] == [wf.id]
    assert page.data[0].draft is None  # lists carry summaries

    blocks = [START, fn("a", "double"), END]
    edges = [edge("start", "x", "a", "value"), edge("a", "output", "end", "result")]
    assert client.workflows.replace_draft(wf.id, blocks, edges).draft is not None
    patched = client.workflows.patch_block(wf.id, "a", name="twice", config={"function": "inc"})
    assert patched.draft is not None
    assert next(b for b in patched.draft["blocks"] if b["id"] == "a")["name"] == "twice"
    version = client.workflows.publish(wf.id, name="v1")
    assert version.number == 1 and version.name == "v1"
    assert client.workflows.get_version(wf.id, 1).graph == version.graph
    assert client.workflows.get(wf.id).latest_version == 1


def test_runs_wait_steps_comments_and_checkpoints(client: Client) -> None:
    wf = client.workflows.create("doubler", DOUBLER["blocks"], DOUBLER["edges"])
    run = client.runs.create(wf.id, {"x": 5}, metadata={"k": "v"}, initiator="tests")
    assert isinstance(run, Run) and run.status == "not_started" and run.version == 0
    seen: list[Event] = []
    done = client.runs.wait(run.id, timeout=30, on_event=seen.append)
    assert done.status == "completed" and done.is_terminal
    assert done.output == {"result": 11}
    assert done.progress.steps_done == done.progress.steps_total == 4
    assert seen and seen[-1].is_terminal and all(e.seq > 0 for e in seen)

    steps = list(client.runs.steps(run.id, page_size=2))  # three pages
    assert all(isinstance(s, Step) for s in steps)
    assert sorted(s.step_id for s in steps) == ["a", "b", "end", "start"]
    assert {s.status for s in steps} == {"completed"}

    comment = client.runs.comment(run.id, "looks right", author="ada")
    assert comment.text == "looks right" and comment.display_name == "ada"
    assert comment.author is not None and comment.author.startswith("qk_")
    assert [c.text for c in client.runs.get(run.id).comments] == ["looks right"]

    child = client.runs.checkpoint(run.id, 0, input={"x": 1})
    assert child.original_run_id == run.id and child.parent_turn_index == 0
    assert client.runs.wait(child.id, timeout=30).output == {"result": 3}
    lineage = client.runs.list(original_run_id=run.id)
    assert [r.id for r in lineage] == [child.id]
    assert {r.id for r in client.runs.list(workflow_id=wf.id)} == {run.id, child.id}
    assert [r.id for r in client.runs.list(workflow_id=wf.id, limit=1)] == [child.id]


def test_events_are_typed_and_resumable(client: Client) -> None:
    wf = client.workflows.create("doubler", DOUBLER["blocks"], DOUBLER["edges"])
    run = client.runs.create(wf.id, {"x": 1})
    events = list(client.runs.events(run.id))
    assert [e.seq for e in events] == sorted({e.seq for e in events})
    assert events[-1].kind == "run" and events[-1].status == "completed"
    assert events[-1].progress is not None and events[-1].progress.steps_done == 4
    assert any(e.kind == "steps" and e.steps for e in events)
    # From the middle: exactly the rest.
    rest = list(client.runs.events(run.id, after=events[2].seq))
    assert rest == events[3:]


def test_pause_resume_cancel_and_input(client: Client) -> None:
    wf = client.workflows.create("slow", SLOW["blocks"], SLOW["edges"])
    run = client.runs.create(wf.id, {"x": 1})
    assert client.runs.pause(run.id).status == "paused"
    with pytest.raises(Conflict) as exc:
        client.runs.pause(run.id)
    assert exc.value.status == 409 and exc.value.title
    assert client.runs.resume(run.id).status == "running"
    assert client.runs.cancel(run.id).status == "cancelled"
    assert client.runs.wait(run.id, timeout=10).status == "cancelled"

    ask = client.workflows.create("ask", ASK["blocks"], ASK["edges"])
    run = client.runs.create(ask.id, {"x": "ok?"})
    waiting = client.runs.wait(run.id, timeout=30, until={"waiting_for_user_input"})
    assert waiting.status == "waiting_for_user_input"
    assert waiting.output["awaiting_input"]["prompt"] == "ok?"
    client.runs.input(run.id, {"ok": True})
    # The replayed "waiting" event of turn 0 must not end this wait.
    done = client.runs.wait(run.id, timeout=30, until={"waiting_for_user_input"})
    assert done.status == "completed", done
    assert done.output == {"decision": {"ok": True}}


def test_typed_problems(client: Client, fleet: Fleet) -> None:
    with pytest.raises(NotFound) as nf:
        client.runs.get("0" * 24)
    assert nf.value.status == 404 and "not found" in nf.value.detail
    assert nf.value.problem["type"].startswith("urn:quorum:problem:")

    with pytest.raises(ValidationFailed) as bad:
        client.workflows.create("bad", [{"id": "start", "type": "nope"}])
    assert bad.value.status == 422 and bad.value.errors
    assert "422" in str(bad.value) and "nope" in str(bad.value)

    wf = client.workflows.create("pages", PAGES["blocks"], PAGES["edges"])
    run = client.runs.wait(client.runs.create(wf.id, {"x": [1, 2, 3]}).id, timeout=30)
    with pytest.raises(ValidationFailed) as several:
        client.block_executions.create(run.id, "double")
    assert several.value.available_iterations == [
        {"step_id": f"pages[{i}]/double", "iteration": f"pages[{i}]"} for i in range(3)
    ]

    # Upstream drift: 409 with the drifted blocks, unless not verified.
    wf = client.workflows.create("doubler", DOUBLER["blocks"], DOUBLER["edges"])
    run = client.runs.wait(client.runs.create(wf.id, {"x": 2}).id, timeout=30)
    client.workflows.patch_block(wf.id, "a", config={"function": "inc"})
    with pytest.raises(Conflict) as drift:
        client.block_executions.create(run.id, "b")
    assert drift.value.drift is not None and drift.value.drift["blocks"] == ["a"]
    ex = client.block_executions.create(run.id, "b", check_eligibility=False)
    assert isinstance(ex, BlockExecution) and ex.status in ("pending", "queued")
    ex = client.block_executions.wait(ex.id, timeout=30)
    assert ex.status == "completed" and ex.handle_outputs == {"output": {"type": "json", "data": 5}}
    assert client.block_executions.get(ex.id) == ex
    assert [e.id for e in client.block_executions.list(run_id=run.id)] == [ex.id]
    with pytest.raises(Conflict):
        client.block_executions.cancel(ex.id)

    with Client(fleet.base_url, "qk_nope", retries=0) as stranger, pytest.raises(Unauthorized):
        stranger.runs.get(run.id)


def test_wait_times_out(client: Client) -> None:
    wf = client.workflows.create("slow", SLOW["blocks"], SLOW["edges"])
    run = client.runs.create(wf.id, {"x": 1})
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        client.runs.wait(run.id, timeout=1.0)
    assert time.monotonic() - started < 2.5
    assert client.runs.wait(run.id, timeout=30).status == "completed"


class NoEventStream(httpx.HTTPTransport):
    """A proxy in the way that does not pass event streams: wait() must poll."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(502, text="<html>bad gateway</html>")
        return super().handle_request(request)


def test_wait_falls_back_to_polling(fleet: Fleet, key: str) -> None:
    with Client(fleet.base_url, key, transport=NoEventStream(), retries=0) as c:
        wf = c.workflows.create("doubler", DOUBLER["blocks"], DOUBLER["edges"])
        run = c.runs.create(wf.id, {"x": 3})
        seen: list[Event] = []
        done = c.runs.wait(run.id, timeout=30, on_event=seen.append, poll_interval=0.1)
        assert done.status == "completed" and done.output == {"result": 7}
        assert seen and {e.seq for e in seen} == {0} and seen[-1].status == "completed"


def test_async_client(fleet: Fleet, key: str) -> None:
    async def main() -> None:
        async with AsyncClient(fleet.base_url, key, timeout=20) as c:
            wf = await c.workflows.create("doubler", DOUBLER["blocks"], DOUBLER["edges"])
            assert [w.id for w in await c.workflows.list()] == [wf.id]
            run = await c.runs.create(wf.id, {"x": 10})
            seen: list[Event] = []
            done = await c.runs.wait(run.id, timeout=30, on_event=seen.append)
            assert done.status == "completed" and done.output == {"result": 21}
            assert seen[-1].is_terminal
            events = [e async for e in c.runs.events(run.id)]
            assert [e.seq for e in events] == [e.seq for e in seen]
            steps = [s async for s in c.runs.steps(run.id, page_size=3)]
            assert sorted(s.step_id for s in steps) == ["a", "b", "end", "start"]
            with pytest.raises(NotFound):
                await c.runs.get("0" * 24)
            with pytest.raises(ValidationFailed):
                await c.workflows.create("bad", [])
            slow = await c.workflows.create("slow", SLOW["blocks"], SLOW["edges"])
            slow_run = await c.runs.create(slow.id, {"x": 1})
            with pytest.raises(WaitTimeout):
                await c.runs.wait(slow_run.id, timeout=0.5)
            assert (await c.runs.cancel(slow_run.id)).status == "cancelled"
            with pytest.raises(Conflict):
                await c.runs.resume(slow_run.id)
            child = await c.runs.checkpoint(run.id, 0)
            assert (await c.runs.wait(child.id, timeout=30)).output == {"result": 21}
            ex = await c.block_executions.create(run.id, "b")
            assert (await c.block_executions.wait(ex.id, timeout=30)).status == "completed"

    asyncio.run(main())


class Stub:
    """A tiny HTTP server answering from a script; it records what it was sent."""

    def __init__(self, answers: list[tuple[int, dict[str, str], Any]]) -> None:
        self.answers = answers
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                stub.seen.append((self.command, urlsplit(self.path).path, dict(self.headers)))
                status, headers, body = stub.answers[min(len(stub.seen), len(stub.answers)) - 1]
                data = json.dumps(body).encode()
                self.send_response(status)
                ctype = "application/problem+json" if status >= 400 else "application/json"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


RUN = {"id": "6b02c91cc48b071f58f281e1", "workflow_id": "6b02c91cc48b071f58f281e0"}
UNAVAILABLE = {"type": "urn:quorum:problem:unavailable", "title": "Service Unavailable"}


@pytest.fixture
def stub_factory() -> Iterator[Any]:
    stubs: list[Stub] = []

    def make(answers: list[tuple[int, dict[str, str], Any]]) -> Stub:
        stubs.append(Stub(answers))
        return stubs[-1]

    yield make
    for s in stubs:
        s.close()


def test_retries_503_with_one_idempotency_key(stub_factory: Any) -> None:
    busy = (503, {"Retry-After": "0"}, {**UNAVAILABLE, "status": 503, "detail": "db down"})
    stub = stub_factory([busy, busy, (202, {}, {**RUN, "status": "not_started"})])
    with Client(stub.url, "qk_test", retries=3) as c:
        run = c.runs.create(RUN["workflow_id"], {"x": 1})
    assert run.id == RUN["id"] and run.status == "not_started"
    keys = [h.get("Idempotency-Key") for _, _, h in stub.seen]
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1
    assert [p for _, p, _ in stub.seen] == ["/v1/workflows/runs"] * 3

    # Out of retries: the typed problem.
    stub = stub_factory([busy])
    with Client(stub.url, "qk_test", retries=2) as c, pytest.raises(ServiceUnavailable) as exc:
        c.runs.get(RUN["id"])
    assert exc.value.status == 503 and exc.value.detail == "db down"
    assert len(stub.seen) == 3
    # Each POST gets a key of its own; a given key is used as is.
    comment = (201, {}, {"id": "c1", "text": "t"})
    stub = stub_factory([comment, comment, (202, {}, {**RUN, "status": "not_started"})])
    with Client(stub.url, "qk_test") as c:
        c.runs.comment(RUN["id"], "t")
        c.runs.comment(RUN["id"], "t")
        c.runs.create(RUN["workflow_id"], idempotency_key="mine")
    first, second, third = (h["Idempotency-Key"] for _, _, h in stub.seen)
    assert first != second and third == "mine"


def test_retries_429_honouring_retry_after(stub_factory: Any) -> None:
    limited = (429, {"Retry-After": "1"}, {"status": 429, "title": "Too Many Requests"})
    stub = stub_factory([limited, (200, {}, {**RUN, "status": "running"})])
    started = time.monotonic()
    with Client(stub.url, "qk_test") as c:
        assert c.runs.get(RUN["id"]).status == "running"
    assert time.monotonic() - started >= 0.95
    # A wait longer than max_retry_wait is not slept through: the caller decides.
    stub = stub_factory([(429, {"Retry-After": "120"}, {"status": 429, "detail": "slow down"})])
    with Client(stub.url, "qk_test", max_retry_wait=5) as c, pytest.raises(RateLimited) as exc:
        c.runs.get(RUN["id"])
    assert exc.value.retry_after == 120 and len(stub.seen) == 1


def test_retries_through_a_cut_connection(fleet: Fleet, key: str) -> None:
    port = int(urlsplit(fleet.base_url).port or 0)
    proxy = TcpProxy("127.0.0.1", port)
    try:
        with Client(f"http://127.0.0.1:{proxy.port}", key, retries=4) as c:
            wf = c.workflows.create("doubler", DOUBLER["blocks"], DOUBLER["edges"])
            proxy.cut()
            threading.Timer(0.4, proxy.restore).start()
            run = c.runs.create(wf.id, {"x": 1})  # retried until the link is back
            assert c.runs.wait(run.id, timeout=30).output == {"result": 3}
            assert len(c.runs.list(workflow_id=wf.id)) == 1  # one run: the retry was safe
            proxy.cut()
            with pytest.raises(ConnectionFailed):
                c.runs.get(run.id)
    finally:
        proxy.close()
