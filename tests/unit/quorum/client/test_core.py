"""The client's transport-neutral core: retries, the event stream and waiting, as decisions.

Each policy is checked as a value here; tests/unit/quorum/client/test_clients.py checks that
the sync and the async client drive it alike over httpx's MockTransport.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from quorum.client.core import Call, Follow, Retries, Watch
from quorum.client.errors import ConnectionFailed, NotFound, QuorumError, WaitTimeout
from quorum.client.models import Run

RUN_ID = "6b02c91cc48b071f58f281e1"


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    request = httpx.Request("GET", "http://quorum.test/x")
    return httpx.Response(status, json=body or {}, headers=headers, request=request)


def run(status: str, done: int = 0) -> Run:
    progress = {"steps_total": 2, "steps_done": done}
    parsed: Run = Run.parse(
        {"id": RUN_ID, "workflow_id": RUN_ID, "status": status, "progress": progress}
    )
    return parsed


def test_a_post_keeps_one_idempotency_key_across_its_retries() -> None:
    call: Call[Any] = Call(method="POST", path="/v1/workflows", json={"a": 1})
    first = call.request()
    assert first["headers"]["Idempotency-Key"].startswith("qc-")
    assert first["json"] == {"a": 1}
    mine: Call[Any] = Call(method="POST", path="/p", idempotency_key="mine")
    assert mine.request()["headers"] == {"Idempotency-Key": "mine"}
    assert mine.request()["json"] is None  # MISSING: no body at all
    assert Call(method="GET", path="/p").request()["headers"] == {}


def test_retries_honour_retry_after_and_stop_at_the_limit() -> None:
    retries = Retries(method="GET", limit=2, max_wait=60, base_url="http://quorum.test")
    assert retries.after_response(answer(503, **{"Retry-After": "7"})) == 7
    assert retries.after_response(answer(429, **{"Retry-After": "3"})) == 3
    assert retries.after_response(answer(503, **{"Retry-After": "1"})) is None  # limit reached
    assert retries.attempt == 2


def test_a_retry_after_longer_than_max_wait_is_not_waited_for() -> None:
    retries = Retries(method="GET", limit=3, max_wait=60, base_url="http://quorum.test")
    assert retries.after_response(answer(503, **{"Retry-After": "120"})) is None


def test_only_a_retried_post_whose_key_is_held_retries_a_409() -> None:
    held = answer(409, {"detail": "Idempotency-Key still in use"})
    fresh = Retries(method="POST", limit=3, max_wait=60, base_url="http://quorum.test")
    assert fresh.after_response(held) is None  # a first attempt's 409 is the answer
    again = Retries(method="POST", limit=3, max_wait=60, base_url="http://quorum.test", attempt=1)
    assert again.after_response(held) is not None
    assert again.after_response(answer(200)) is None


def test_connection_failures_back_off_then_fail() -> None:
    retries = Retries(method="GET", limit=1, max_wait=60, base_url="http://quorum.test")
    assert 0 < retries.after_transport_error(httpx.ConnectError("refused")) <= 0.25
    with pytest.raises(ConnectionFailed, match=re.escape("cannot reach http://quorum.test")):
        retries.after_transport_error(httpx.ConnectError("refused"))


def follow(**fields: Any) -> Follow:
    values: dict[str, Any] = {
        "run_id": RUN_ID,
        "after": None,
        "reconnect": True,
        "retries": 2,
        "max_wait": 60.0,
        "timeout": 30.0,
    }
    return Follow(**(values | fields))


def sse(seq: int, status: str) -> list[str]:
    return [f"id: {seq}", "event: run", "data: " + json.dumps({"status": status}), ""]


def test_the_stream_resumes_after_the_last_event_seen() -> None:
    f = follow(after=4)
    assert f.connect(now=0.0)["headers"]["Last-Event-ID"] == "4"
    events = [e for line in [": keepalive", *sse(5, "running")] if (e := f.feed(line))]
    assert [(e.seq, e.status) for e in events] == [(5, "running")]
    assert f.got_any and f.after == 5
    assert f.connect(now=0.0)["headers"]["Last-Event-ID"] == "5"
    assert not f.got_any, "each connection starts empty"
    assert f.pause_after_end() > 0, "an ended stream that brought nothing is not hammered"


def test_a_refused_stream_is_retried_then_raised() -> None:
    f = follow(retries=1)
    assert f.refused(answer(503, **{"Retry-After": "2"})) == 2
    with pytest.raises(QuorumError):
        f.refused(answer(503, **{"Retry-After": "2"}))
    with pytest.raises(NotFound):
        follow().refused(answer(404, {"title": "Not Found", "detail": "no such run"}))
    with pytest.raises(QuorumError, match="not answer with an event stream"):
        follow().refused(answer(200))


def test_a_broken_stream_reconnects_until_the_retries_or_the_deadline_run_out() -> None:
    cut = httpx.ReadError("cut")
    f = follow(retries=1)
    assert f.broken(cut, now=0.0) > 0
    with pytest.raises(ConnectionFailed):
        f.broken(cut, now=0.0)
    with pytest.raises(ConnectionFailed):
        follow(reconnect=False).broken(cut, now=0.0)
    with pytest.raises(WaitTimeout):
        follow(deadline=10.0).broken(cut, now=10.0)


def test_a_deadline_shortens_the_read_timeout_and_ends_the_stream() -> None:
    f = follow(deadline=100.0)
    assert f.connect(now=95.0)["timeout"].read == 5.0
    assert not f.out_of_time(now=96.0)
    with pytest.raises(WaitTimeout):
        f.out_of_time(now=100.0)
    with pytest.raises(WaitTimeout):
        f.connect(now=100.0)
    long = follow(deadline=1000.0)
    long.connect(now=0.0)
    assert long.out_of_time(now=990.0), "reconnect so the read timeout ends at the deadline"


def test_watching_a_run_reports_each_change_once_and_times_out() -> None:
    watch = Watch.of(RUN_ID, {"waiting_for_user_input"}, timeout=10, now=100.0)
    assert watch.deadline == 110.0
    assert watch.reached(run("completed")) and watch.reached(run("waiting_for_user_input"))
    assert not watch.reached(run("running"))
    first = watch.polled(run("running"))
    assert first is not None and (first.seq, first.kind, first.status) == (0, "run", "running")
    assert watch.polled(run("running")) is None
    assert watch.polled(run("running", done=1)) is not None
    assert watch.poll_wait(run("running"), interval=1.0, now=109.5) == 0.5
    with pytest.raises(WaitTimeout, match="still running after 10 s"):
        watch.poll_wait(run("running"), interval=1.0, now=110.0)
    assert Watch.of(RUN_ID, None, timeout=10, now=None).poll_wait(run("x"), 2.0, 1e9) == 2.0
