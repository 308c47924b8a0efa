"""Gunicorn settings for the Quorum API, read from ``QUORUM_API_*`` environment variables.

Usage: ``gunicorn -c python:api.gunicorn_conf 'api.asgi:create_asgi_app()'`` (or
``quorum api``). Each worker is a uvicorn event loop (api.asgi_worker): ordinary requests
run on its ``QUORUM_API_THREADS`` threads, event streams on the loop itself.
"""

from __future__ import annotations

import gc
import os
from typing import Any


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not an integer") from exc
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be at least 1")
    return value


bind = os.environ.get("QUORUM_API_BIND", "").strip() or "127.0.0.1:8000"
workers = _int_env("QUORUM_API_WORKERS", 2)
threads = _int_env("QUORUM_API_THREADS", 4)
worker_class = "api.asgi_worker.QuorumWorker"
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
# Method, path (without the query string), protocol, status, size, duration in seconds,
# user agent. Never the query string (a client may put a key there by mistake), the
# Basic-auth user (``%(u)s``: a key sent as ``curl -u KEY:``), the referer or any header.
# With the uvicorn worker, api.asgi writes these lines in this format.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)s "%(a)s"'


def post_fork(server: Any, worker: Any) -> None:
    # The app is loaded in each worker after the fork (no ``preload_app``), so its engine
    # and pool are the worker's own; if that ever changes, dispose the engine here.
    # Application logs become structured (JSON lines unless QUORUM_LOG_JSON=false).
    from engine.settings import Settings
    from quorum.logs import configure_logging

    configure_logging(Settings.from_env())


def post_worker_init(worker: Any) -> None:
    # The app is loaded now: its ~140,000 long-lived objects (routes, schemas, the Celery
    # app, SQLAlchemy's mappers) go to the permanent generation, so that a full collection,
    # which holds the GIL and so every request of the worker, no longer walks them all
    # (about 70 ms each on a busy 2-core machine: a p99 latency of its own).
    gc.freeze()
