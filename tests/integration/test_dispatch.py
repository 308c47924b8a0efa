"""The dispatcher's batched Redis publish, against real Redis and a real Celery worker.

The batch builds messages from a template instead of calling ``send_task`` per row, so
the first test holds it to ``send_task``'s exact output (message and task-sent event, as
pushed to Redis); the next ones have a real worker run what it published, and make sure
a Redis that did not take the batch is an exception, never a silent drop.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery, Task
from celery._state import _task_stack
from celery.app.task import Context
from celery.contrib.testing.worker import start_worker

from engine.ports import Work, WorkKind
from engine.settings import Settings
from tests.support.redis_server import RedisServer
from workers.celery_app import create_celery
from workers.dispatch import TASK_FOR, CeleryDispatcher, task_id
from workers.names import TASK_EXECUTION, TASK_SAMPLE, TASK_STEP

pytestmark = pytest.mark.integration

QUEUE = "dispatch-test"
WORK = [
    Work(kind=WorkKind.STEP, id="0193a5b2-0001-7000-8000-000000000001"),
    Work(kind=WorkKind.EXECUTION, id="0193a5b2-0002-7000-8000-000000000002"),
    Work(kind=WorkKind.SAMPLE, id="0193a5b2-0003-7000-8000-000000000003"),
    Work(kind=WorkKind.STEP, id="0193a5b2-0004-7000-8000-000000000004"),
]


@pytest.fixture
def app(module_broker: str) -> Iterator[Celery]:
    app = create_celery(Settings(broker_url=module_broker, queue=QUEUE))
    yield app
    app.close()
    redis.Redis.from_url(module_broker).flushdb()


@pytest.fixture
def send_task_calls(app: Celery, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Task ids the dispatcher hands to ``send_task`` (the per-message path)."""
    calls: list[str] = []
    real_send_task = app.send_task

    def send_task(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["task_id"])
        return real_send_task(name, *args, **kwargs)

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


def _send_task_reference(app: Celery, work: list[Work]) -> None:
    """What the dispatcher did before batching: send_task per row, on one producer."""
    with app.producer_or_acquire() as producer:
        for w in work:
            app.send_task(
                TASK_FOR[w.kind],
                args=[w.id],
                task_id=task_id(w),
                producer=producer,
                ignore_result=True,
                countdown=w.delay_s or None,
            )


class Pushed:
    """The raw Redis writes of one publish: queue list entries and task-sent events."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        # kombu's fanout topic for the event exchange (PUB/SUB spans all databases).
        db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.pubsub.subscribe(f"/{db}.celeryev/task.sent")
        self.pubsub.get_message(timeout=1)  # the subscribe confirmation

    def take(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Messages and events by task id, normalised where every publish differs."""
        raw = self.client.lrange(QUEUE, 0, -1)
        self.client.delete(QUEUE)
        messages = {}
        for item in raw:
            m = json.loads(item)
            m["properties"].pop("delivery_tag")  # a fresh uuid per message, by design
            m["body"] = json.loads(base64.b64decode(m["body"]))
            messages[m["headers"]["id"]] = m
        events: dict[str, Any] = {}
        while (got := self.pubsub.get_message(timeout=0.5)) is not None:
            e = json.loads(got["data"])
            e["properties"].pop("delivery_tag")
            e["body"] = json.loads(base64.b64decode(e["body"]))
            for volatile in ("timestamp", "clock", "local_received"):
                e["body"].pop(volatile, None)
            e["channel"] = got["channel"]
            events[e["body"]["uuid"]] = e
        return messages, events

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


class _RunningTask:
    """What Celery reads of the task a worker is running when it publishes from it."""

    def __init__(self, **request: Any) -> None:
        self.request = Context(called_directly=False, **request)

    def add_trail(self, result: Any) -> None:
        pass


@pytest.mark.parametrize("finalized", [False, True], ids=["api", "worker-app"])
@pytest.mark.parametrize("in_task", [False, True], ids=["top-level", "in-a-task"])
def test_batch_pushes_exactly_what_send_task_pushes(
    app: Celery, module_broker: str, send_task_calls: list[str], finalized: bool, in_task: bool
) -> None:
    if finalized:
        app.finalize()  # a worker's app: send_task also merges each task's own options
    dispatcher = CeleryDispatcher(app)
    # An earlier dispatch from outside any task: its templates serve the next one, which
    # must still carry the ids of the task it is sent from.
    dispatcher.dispatch([Work(kind=kind, id=f"warm-{kind}") for kind in WorkKind])
    redis.Redis.from_url(module_broker).delete(QUEUE)
    parent = _RunningTask(id="parent-1", root_id="root-1") if in_task else None
    if parent is not None:
        _task_stack.push(parent)  # as inside a worker running a task
    pushed = Pushed(module_broker)
    pushed.take()  # the warm-up's events
    try:
        delayed = Work(kind=WorkKind.STEP, id="0193a5b2-0009-7000-8000-000000000009", delay_s=30)
        dispatcher.dispatch([*WORK, delayed])
        assert send_task_calls == [task_id(delayed)], "only delayed work takes send_task"
        batched, batched_events = pushed.take()

        _send_task_reference(app, WORK)
        reference, reference_events = pushed.take()
    finally:
        pushed.close()
        if parent is not None:
            _task_stack.pop()

    eta = batched.pop(task_id(delayed))["headers"]["eta"]
    assert eta is not None
    assert set(reference) == {task_id(w) for w in WORK}
    assert batched == reference
    assert batched_events.pop(task_id(delayed))["body"]["eta"] == eta
    assert len(reference_events) == len(WORK)
    assert batched_events == reference_events

    m = batched[task_id(WORK[1])]
    assert m["headers"]["task"] == TASK_EXECUTION
    assert m["body"][0] == [WORK[1].id]
    assert m["headers"]["ignore_result"] is True
    assert m["properties"]["delivery_info"] == {"exchange": "", "routing_key": QUEUE}
    expected_root = "root-1" if in_task else task_id(WORK[1])
    assert m["headers"]["root_id"] == expected_root
    assert m["headers"]["parent_id"] == ("parent-1" if in_task else None)


def test_a_real_worker_runs_the_batched_messages(app: Celery, module_broker: str) -> None:
    """A Celery worker consumes the batch; a fan-out from inside a task works the same."""
    # The worker's app: same broker, queue and flags, recording tasks under the same names.
    worker_app = Celery("dispatch-test-worker", broker=module_broker, set_as_current=False)
    worker_app.conf.update(
        {key: app.conf[key] for key in ("task_default_queue", "task_acks_late", "accept_content")},
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    seen: list[tuple[str, str, list[Any], str | None, str | None]] = []
    done = threading.Event()
    children = [Work(kind=WorkKind.SAMPLE, id=f"child-{i}") for i in range(50)]
    expected = len(WORK) + len(children)
    dispatcher = CeleryDispatcher(app)

    def record(task: Task, row_id: str) -> None:
        r = task.request
        seen.append((task.name, r.id, list(r.args), r.root_id, r.parent_id))
        if r.id == task_id(WORK[0]):
            dispatcher.dispatch(children)  # the orchestrator's fan-out, from a worker task
        if len(seen) == expected:
            done.set()

    for name in (TASK_STEP, TASK_EXECUTION, TASK_SAMPLE):
        worker_app.task(name=name, bind=True, shared=False)(record)

    with start_worker(worker_app, perform_ping_check=False, shutdown_timeout=10):
        dispatcher.dispatch(WORK)
        assert done.wait(30), f"the worker ran {len(seen)} of {expected} tasks"

    by_id = {s[1]: s for s in seen}
    assert len(by_id) == expected, "each message ran once"
    for w in WORK:
        assert by_id[task_id(w)] == (TASK_FOR[w.kind], task_id(w), [w.id], task_id(w), None)
    parent = task_id(WORK[0])
    for w in children:
        assert by_id[task_id(w)] == (TASK_SAMPLE, task_id(w), [w.id], parent, parent)


def test_a_batch_redis_did_not_take_raises() -> None:
    server = RedisServer()
    app = create_celery(Settings(broker_url=server.url, queue=QUEUE))
    dispatcher = CeleryDispatcher(app)
    client = redis.Redis.from_url(server.url)
    try:
        dispatcher.dispatch(WORK)  # the producer's connection is up and pooled
        assert client.llen(QUEUE) == len(WORK)
        server.stop()
        # Twice: a pooled connection that breaks on the pipeline, then a new connection
        # that cannot connect. Both fail fast: the API answers within seconds meanwhile.
        for _ in range(2):
            t0 = time.monotonic()
            with pytest.raises(Exception):  # noqa: B017 - whichever kombu/redis error it is
                dispatcher.dispatch(WORK)
            assert time.monotonic() - t0 < 3
        server.start()  # empty: a restarted Redis lost its memory
        dispatcher.dispatch(WORK)  # and the next dispatch reconnects
        assert client.llen(QUEUE) == len(WORK)
    finally:
        client.close()
        app.close()
        server.stop()


def test_a_routed_task_keeps_send_task_and_its_priority_list(
    app: Celery, send_task_calls: list[str]
) -> None:
    """A route with more than a queue (here a priority) is send_task's, the rest batches."""
    app.conf.task_routes = {TASK_SAMPLE: {"queue": QUEUE, "priority": 5}}
    CeleryDispatcher(app).dispatch(WORK)
    assert send_task_calls == [task_id(w) for w in WORK if w.kind == WorkKind.SAMPLE]
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        # kombu's Redis priority steps: priority 5 goes to the "3" list of the queue.
        routed = [json.loads(m) for m in client.lrange(f"{QUEUE}\x06\x163", 0, -1)]
        plain = [json.loads(m) for m in client.lrange(QUEUE, 0, -1)]
    finally:
        client.close()
    assert [m["headers"]["task"] for m in routed] == [TASK_SAMPLE]
    assert routed[0]["properties"]["priority"] == 5
    assert sorted(m["headers"]["id"] for m in plain) == sorted(
        task_id(w) for w in WORK if w.kind != WorkKind.SAMPLE
    )


def test_dispatches_reuse_their_templates_and_redis_client(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per request, the API publishes one message: building its template and a Redis
    client each time cost more than the message itself."""
    dispatcher = CeleryDispatcher(app)
    dispatcher.dispatch(WORK)  # one template per task name, one client
    built: list[str] = []
    clients: list[Any] = []
    real_create = app.amqp.create_task_message
    real_init = redis.Redis.__init__

    def create_task_message(task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        built.append(name)
        return real_create(task_id, name, *args, **kwargs)

    def init(self: redis.Redis, *args: Any, **kwargs: Any) -> None:
        clients.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(app.amqp, "create_task_message", create_task_message)
    monkeypatch.setattr(redis.Redis, "__init__", init)
    for _ in range(3):
        dispatcher.dispatch(WORK)
    assert built == []
    assert clients == []
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        assert client.llen(QUEUE) == 4 * len(WORK)
    finally:
        client.close()


def test_each_thread_publishes_what_its_send_task_would(app: Celery, module_broker: str) -> None:
    """send_task's reply_to is the calling thread's: a thread never gets another's template."""
    dispatcher = CeleryDispatcher(app)
    dispatcher.dispatch(WORK)  # this thread's templates
    redis.Redis.from_url(module_broker).delete(QUEUE)
    pushed = Pushed(module_broker)
    got: dict[str, Any] = {}

    def in_another_thread() -> None:
        dispatcher.dispatch(WORK)
        got["batched"] = pushed.take()
        _send_task_reference(app, WORK)
        got["reference"] = pushed.take()

    try:
        pushed.take()
        worker = threading.Thread(target=in_another_thread)
        worker.start()
        worker.join(30)
    finally:
        pushed.close()
    batched, batched_events = got["batched"]
    reference, reference_events = got["reference"]
    assert batched == reference
    assert batched_events == reference_events
    (mine,) = {m["properties"]["reply_to"] for m in batched.values()}
    assert mine != app.thread_oid, "the other thread's own reply_to"
