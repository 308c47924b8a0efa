"""workers.metrics_server: a multiprocess directory per worker, served from its parent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import signals
from prometheus_client import values

from engine.settings import Settings
from workers import metrics_server


def test_no_port_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics_server.MULTIPROC_ENV, raising=False)
    receivers = len(signals.worker_init.receivers)
    assert metrics_server.install(Settings(worker_metrics_port=0)) is None
    assert metrics_server.MULTIPROC_ENV not in os.environ
    assert len(signals.worker_init.receivers) == receivers


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv(metrics_server.MULTIPROC_ENV, raising=False)
    before = {
        sig: list(sig.receivers)
        for sig in (signals.worker_init, signals.worker_process_shutdown, signals.worker_shutdown)
    }
    value_class = values.ValueClass
    directory = metrics_server.install(Settings(worker_metrics_port=9400))
    assert directory is not None
    yield Path(directory)
    # Back to this process's own metrics: the other tests must not write files.
    values.ValueClass = value_class
    os.environ.pop(metrics_server.MULTIPROC_ENV, None)
    for sig, receivers in before.items():
        sig.receivers = receivers
    if Path(directory).exists():
        Path(directory).rmdir()


def test_a_port_prepares_a_fresh_multiprocess_directory(installed: Path) -> None:
    assert installed.is_dir() and not any(installed.iterdir())
    assert os.environ[metrics_server.MULTIPROC_ENV] == str(installed)
    assert values.ValueClass is not values.MutexValue
    # Served when the worker starts, cleaned when it stops.
    assert len(signals.worker_init.receivers) >= 1
    signals.worker_shutdown.send(sender=None)
    assert not installed.exists()
