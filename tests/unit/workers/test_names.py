"""Task names: one module owns them, the app registers each, the dispatcher sends the new
name of a consensus sample, and messages queued under its former name still run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import Celery

import workers.tasks as tasks
from engine.ports import WorkKind
from engine.settings import Settings
from engine.worker.entry import DATABASE_AWAY
from workers.celery_app import create_celery
from workers.dispatch import TASK_FOR
from workers.names import (
    TASK_EXECUTION,
    TASK_PURGE,
    TASK_REAP,
    TASK_SAMPLE,
    TASK_SAMPLE_FORMER,
    TASK_STEP,
    TASK_SWEEP,
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Celery]:
    app = create_celery(Settings(data_dir=str(tmp_path)))
    yield app
    app.close()


def test_every_name_is_a_registered_task(app: Celery) -> None:
    names = (TASK_STEP, TASK_EXECUTION, TASK_SAMPLE, TASK_SAMPLE_FORMER)
    names += (TASK_SWEEP, TASK_REAP, TASK_PURGE)
    assert set(names) <= set(app.tasks)


def test_a_consensus_sample_is_sent_under_its_new_name() -> None:
    assert TASK_FOR[WorkKind.SAMPLE] == "quorum.consensus_sample.execute"
    assert TASK_SAMPLE_FORMER not in TASK_FOR.values()


@pytest.mark.parametrize("name", [TASK_SAMPLE, TASK_SAMPLE_FORMER])
def test_either_name_runs_the_sample(
    app: Celery, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[tuple[str, bool]] = []

    def run_sample(row_id: str, *, retried: bool) -> None:
        ran.append((row_id, retried))

    runtime = SimpleNamespace(worker=SimpleNamespace(run_sample=run_sample))
    monkeypatch.setattr(tasks, "runtime_for", lambda _app: runtime)
    app.tasks[name]("sample-1")
    assert ran == [("sample-1", False)]
    # The same retry policy: either message is retried alike while the database is away.
    assert app.tasks[name].autoretry_for == DATABASE_AWAY
