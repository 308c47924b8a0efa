"""One metrics port per worker, whatever its pool size (``QUORUM_WORKER_METRICS_PORT``).

Pool processes are forked by Celery and die and respawn on their own, so each writes its
samples to prometheus_client's multiprocess files in a directory of this worker, and the
worker's parent process serves them all merged on one port.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

from celery import signals

from engine.settings import Settings

log = logging.getLogger("quorum.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def install(settings: Settings) -> str | None:
    """Prepare the multiprocess directory and serve it once the worker starts.

    Call in the worker's parent process before its pool forks; returns the directory,
    or None when the port is 0 (no metrics).
    """
    if settings.worker_metrics_port <= 0:
        return None
    # A fresh directory per worker: files of an earlier worker would add to its totals.
    directory = tempfile.mkdtemp(prefix="quorum-worker-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    _use_multiprocess_values()
    port = settings.worker_metrics_port

    def serve(**_: Any) -> None:
        start_server(port, directory)

    def forget(pid: int | None = None, **_: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), directory)

    signals.worker_init.connect(serve, weak=False)
    signals.worker_process_shutdown.connect(forget, weak=False)
    signals.worker_shutdown.connect(
        lambda **_: shutil.rmtree(directory, ignore_errors=True), weak=False
    )
    return directory


def _use_multiprocess_values() -> None:
    # prometheus_client picks its value store when first imported: if that happened
    # before the directory was set, pick again so pool processes write to the files.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


def start_server(port: int, directory: str) -> Any:
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    server, _thread = start_http_server(port, registry=registry)
    log.info("worker metrics served", extra={"port": port})
    return server
