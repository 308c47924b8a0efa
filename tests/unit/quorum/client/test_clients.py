"""The sync and the async client drive the same core alike: one script, both clients.

httpx's MockTransport answers from a script per route, so what each client sent (and how
often) is what the shared policy decided.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from quorum.client.aio import AsyncClient
from quorum.client.models import Event, Run
from quorum.client.sync import Client

RUN_ID = "6b02c91cc48b071f58f281e1"
RUN_PATH = f"/v1/workflows/runs/{RUN_ID}"


def run_json(status: str, done: int = 0) -> dict[str, Any]:
    progress = {"steps_total": 2, "steps_done": done}
    return {"id": RUN_ID, "workflow_id": RUN_ID, "status": status, "progress": progress}


def events(*pairs: tuple[int, str]) -> httpx.Response:
    text = "".join(
        f"id: {seq}\nevent: run\ndata: {json.dumps({'status': status})}\n\n"
        for seq, status in pairs
    )
    return httpx.Response(200, text=text, headers={"Content-Type": "text/event-stream"})


@dataclass
class Script:
    """Answers per ``METHOD path``, in order (the last one repeats); records each request."""

    answers: dict[str, list[httpx.Response]]
    seen: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        queue = self.answers[f"{request.method} {request.url.path}"]
        return queue.pop(0) if len(queue) > 1 else queue[0]


Drive = Callable[[Script, Callable[[Any], Any]], Any]


def sync(script: Script, use: Callable[[Client], Any]) -> Any:
    with Client("http://quorum.test", "qk", transport=httpx.MockTransport(script)) as client:
        return use(client)


def aio(script: Script, use: Callable[[AsyncClient], Any]) -> Any:
    async def main() -> Any:
        transport = httpx.MockTransport(script)
        async with AsyncClient("http://quorum.test", "qk", transport=transport) as client:
            return await use(client)

    return asyncio.run(main())


async def _collect(stream: Any) -> list[Event]:
    return [e async for e in stream]


@pytest.mark.parametrize("drive", [sync, aio])
def test_a_503_is_retried_with_the_same_idempotency_key(drive: Drive) -> None:
    unavailable = httpx.Response(503, json={"title": "down"}, headers={"Retry-After": "0"})
    script = Script(
        {"POST /v1/workflows/runs": [unavailable, httpx.Response(202, json=run_json("started"))]}
    )
    created = drive(script, lambda c: c.runs.create(RUN_ID, {"x": 1}))
    assert isinstance(created, Run) and created.status == "started"
    keys = [r.headers["Idempotency-Key"] for r in script.seen]
    assert len(keys) == 2 and keys[0] == keys[1]


@pytest.mark.parametrize("drive", [sync, aio])
def test_an_ended_stream_is_resumed_after_the_last_event(drive: Drive) -> None:
    script = Script(
        {
            f"GET {RUN_PATH}/events": [events((1, "running")), events((2, "completed"))],
            f"GET {RUN_PATH}": [httpx.Response(200, json=run_json("running"))],
        }
    )

    def use(c: Any) -> Any:
        stream = c.runs.events(RUN_ID)
        return _collect(stream) if isinstance(c, AsyncClient) else list(stream)

    got = drive(script, use)
    assert [(e.seq, e.status) for e in got] == [(1, "running"), (2, "completed")]
    streams = [r for r in script.seen if r.url.path.endswith("/events")]
    assert [r.headers.get("Last-Event-ID") for r in streams] == [None, "1"]


@pytest.mark.parametrize("drive", [sync, aio])
def test_wait_polls_when_there_is_no_event_stream(drive: Drive) -> None:
    # The first read is wait()'s own look before it follows the run; then one poll each.
    polls = [
        run_json("running"),
        run_json("running"),
        run_json("running"),
        run_json("running", 1),
        run_json("completed", 2),
    ]
    script = Script(
        {
            f"GET {RUN_PATH}/events": [httpx.Response(502, text="<html>bad gateway</html>")],
            f"GET {RUN_PATH}": [httpx.Response(200, json=p) for p in polls],
        }
    )
    seen: list[Event] = []
    done = drive(
        script, lambda c: c.runs.wait(RUN_ID, timeout=30, on_event=seen.append, poll_interval=0)
    )
    assert done.status == "completed"
    # One run event per change, none for the unchanged second poll.
    assert [(e.seq, e.status, e.progress.steps_done) for e in seen] == [
        (0, "running", 0),
        (0, "running", 1),
        (0, "completed", 2),
    ]
