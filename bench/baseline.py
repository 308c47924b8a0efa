"""The baseline: a raw Celery app on the same Redis broker with the engine's worker flags.

Its configuration is copied key by key from :func:`workers.celery_app.create_celery`
(``task_acks_late``, ``task_reject_on_worker_lost``, ``worker_prefetch_multiplier=1``,
``task_ignore_result``, JSON, task events and sent events, the transport options...), so
the only difference from the engine is what the tasks do: nothing, or one chat-completions
call. Its workers are started the same way (``--pool=prefork -E``, same concurrency).

Completion without a result backend: the tasks that end a batch write the wall-clock time
into a Redis key (``count`` increments a counter and stamps the time when it reaches ``n``;
``mark`` stamps it), and the harness reads that key. One exception: a Celery chord cannot
run without a result backend, so the S3 baseline chord (and only it) stores the header
results in Redis (``result_backend`` below, ``ignore_result=False`` on ``provider``), i.e.
the real ``chord`` primitive with its Redis chord counter, not an emulation.

Worker command (``BENCH_*`` variables configure the module-level ``app``)::

    celery -A bench.baseline:app worker --pool=prefork --concurrency=2 -E
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import redis
from celery import Celery

from bench.seam import Settings

# Everything create_celery sets that shapes publishing, delivery and the worker loop.
FLAGS = (
    "task_acks_late",
    "task_reject_on_worker_lost",
    "worker_prefetch_multiplier",
    "task_ignore_result",
    "task_serializer",
    "accept_content",
    "worker_send_task_events",
    "task_send_sent_event",
    "broker_connection_retry_on_startup",
    "broker_connection_max_retries",
    "broker_transport_options",
    "task_publish_retry_policy",
    "broker_pool_limit",
    "worker_cancel_long_running_tasks_on_connection_loss",
    "worker_soft_shutdown_timeout",
    "worker_enable_soft_shutdown_on_idle",
    "worker_hijack_root_logger",
)

NOOP = "bench.noop"
COUNT = "bench.count"
MARK = "bench.mark"
PROVIDER = "bench.provider"


def engine_flags(broker_url: str, queue: str) -> dict[str, Any]:
    """The engine's Celery configuration, as create_celery builds it."""
    from bench.seam import create_celery

    quorum = create_celery(Settings(broker_url=broker_url, queue=queue))
    try:
        return {key: quorum.conf[key] for key in FLAGS}
    finally:
        quorum.close()


def create_baseline(broker_url: str, queue: str, result_backend: str | None = None) -> Celery:
    app = Celery("bench-baseline", broker=broker_url, set_as_current=False)
    app.conf.update(engine_flags(broker_url, queue))
    app.conf.update(task_default_queue=queue, result_backend=result_backend)
    register(app)
    return app


class _PerProcess:
    """A Redis client and an HTTP client per worker process (created after the fork)."""

    pid = -1
    redis: redis.Redis
    http: httpx.Client

    @classmethod
    def get(cls, redis_url: str) -> type[_PerProcess]:
        if cls.pid != os.getpid():
            cls.pid = os.getpid()
            cls.redis = redis.Redis.from_url(redis_url)
            cls.http = httpx.Client(timeout=30)
        return cls


def register(app: Celery) -> None:
    broker_url = str(app.conf.broker_url)

    @app.task(name=NOOP, shared=False)
    def noop(*args: Any) -> None:
        return None

    @app.task(name=COUNT, shared=False)
    def count(key: str, n: int) -> None:
        r = _PerProcess.get(broker_url).redis
        if r.incr(key) == n:
            r.set(f"{key}:done", repr(time.time()))

    @app.task(name=MARK, shared=False)
    def mark(key: str) -> None:
        _PerProcess.get(broker_url).redis.set(key, repr(time.time()))

    # A chord header task: its result is stored so that the chord can join.
    @app.task(name=PROVIDER, ignore_result=False, shared=False)
    def provider(url: str, seed: int) -> Any:
        body = {
            "model": "bench-baseline",
            "messages": [{"role": "user", "content": "extract"}],
            "seed": seed,
        }
        response = _PerProcess.get(broker_url).http.post(url, json=body)
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]


def _from_env() -> Celery:
    return create_baseline(
        os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"),
        os.environ.get("BENCH_QUEUE", "bench-baseline"),
        os.environ.get("BENCH_RESULT_BACKEND") or None,
    )


app = _from_env()
