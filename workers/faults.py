"""Test-only fault points of the worker process (``QUORUM_FAULT_POINTS``)."""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps

from engine.settings import Settings


class Unrecoverable(bootsteps.StartStopStep):
    """A consumer step that fails for good: celery's "Unrecoverable error" path."""

    def start(self, parent: Any) -> None:
        raise RuntimeError("fault injected: worker.unrecoverable")


def install(app: Celery, settings: Settings) -> None:
    if settings.has_fault("worker.unrecoverable"):
        app.steps["consumer"].add(Unrecoverable)
