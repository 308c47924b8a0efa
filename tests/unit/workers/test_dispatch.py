"""The dispatcher on the embedded filesystem broker (``quorum dev``): no Redis batch there.

The Redis batch and its equality with ``send_task`` are in tests/integration/test_dispatch.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

import workers.dispatch as dispatch
from engine.ports import Work, WorkKind
from engine.settings import Settings
from workers.celery_app import create_celery
from workers.dispatch import CeleryDispatcher, task_id
from workers.names import TASK_EXECUTION, TASK_STEP


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Celery]:
    app = create_celery(Settings(data_dir=str(tmp_path), queue="dev-queue"))
    yield app
    app.close()


def test_the_filesystem_broker_gets_every_message_through_send_task(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_batch(*args: Any) -> None:
        raise AssertionError("the filesystem transport cannot batch")

    monkeypatch.setattr(dispatch, "_RedisBatch", no_batch)
    work = [
        Work(kind=WorkKind.STEP, id="s1"),
        Work(kind=WorkKind.EXECUTION, id="e1"),
        Work(kind=WorkKind.STEP, id="s2", delay_s=5),
    ]
    CeleryDispatcher(app).dispatch(work)

    got: dict[str, tuple[str, list[Any], Any]] = {}
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue("dev-queue")
        for _ in work:
            message = queue.get(timeout=5)
            args, _kwargs, _embed = message.decode()
            got[message.headers["id"]] = (message.headers["task"], args, message.headers["eta"])
            message.ack()
        queue.close()
    assert set(got) == {task_id(w) for w in work}
    assert got[task_id(work[0])] == (TASK_STEP, ["s1"], None)
    assert got[task_id(work[1])] == (TASK_EXECUTION, ["e1"], None)
    name, args, eta = got[task_id(work[2])]
    assert (name, args) == (TASK_STEP, ["s2"])
    assert eta is not None, "delayed work keeps its countdown"


def test_nothing_to_dispatch_touches_no_broker(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_producer() -> None:
        raise AssertionError("no producer for an empty dispatch")

    monkeypatch.setattr(app, "producer_or_acquire", no_producer)
    CeleryDispatcher(app).dispatch([])


def test_templates_are_kept_per_thread_and_per_process(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template carries send_task's reply_to (the thread's) and origin (the pid's)."""
    dispatcher = CeleryDispatcher(app)
    mine = dispatcher.templates()
    assert dispatcher.templates() is mine, "kept across dispatches"
    other: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: other.append(dispatcher.templates()))
    thread.start()
    thread.join(5)
    assert other and other[0] is not mine
    real_pid = os.getpid()
    monkeypatch.setattr(dispatch.os, "getpid", lambda: real_pid + 1)  # as in a forked child
    assert dispatcher.templates() is not mine
