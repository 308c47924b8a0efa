"""Celery tasks: thin shells that hand a row id to the worker wing (engine.worker.entry)."""

from __future__ import annotations

import logging

from celery import Celery, Task

from engine.outbox import sweep
from engine.worker.entry import DATABASE_AWAY, RetryRow
from workers.names import (
    TASK_EXECUTION,
    TASK_PURGE,
    TASK_REAP,
    TASK_SAMPLE,
    TASK_SAMPLE_FORMER,
    TASK_STEP,
    TASK_SWEEP,
)
from workers.runtime import holder_alive, runtime_for

log = logging.getLogger("quorum.tasks")

# The database being away is the one failure worth retrying here: every other fault is
# settled by the worker wing on the row itself.
RETRY = {
    "autoretry_for": DATABASE_AWAY,
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 40,
}


def _retried(task: Task) -> bool:
    return bool(task.request.retries)


def register(app: Celery) -> None:
    @app.task(name=TASK_STEP, shared=False, bind=True, **RETRY)
    def execute_step(self: Task, step_id: str) -> None:
        try:
            runtime_for(app).worker.run_step(step_id, retried=_retried(self))
        except RetryRow as exc:
            # A successor run in-process failed on the database: retry it, by its own id.
            delay = min(30, 2**self.request.retries)
            raise self.retry(args=[exc.row_id], exc=exc.__cause__ or exc, countdown=delay) from exc

    @app.task(name=TASK_EXECUTION, shared=False, bind=True, **RETRY)
    def execute_block(self: Task, execution_id: str) -> None:
        runtime_for(app).worker.run_execution(execution_id, retried=_retried(self))

    def execute_sample(self: Task, sample_id: str) -> None:
        runtime_for(app).worker.run_sample(sample_id, retried=_retried(self))

    for name in (TASK_SAMPLE, TASK_SAMPLE_FORMER):
        app.task(name=name, shared=False, bind=True, **RETRY)(execute_sample)

    @app.task(name=TASK_SWEEP, shared=False, acks_late=False)
    def sweep_outbox() -> int:
        rt = runtime_for(app)
        count = sweep(
            rt.db,
            rt.dispatcher,
            older_than_s=rt.settings.outbox_after_s,
            lease_s=rt.settings.lease_s,
            holder_alive=holder_alive,
        )
        if count:
            log.info("outbox re-published rows", extra={"count": count})
        return count

    @app.task(name=TASK_REAP, shared=False, acks_late=False)
    def reap_runs() -> int:
        from engine.reaper import reap

        rt = runtime_for(app)
        return reap(rt.db, rt.dispatcher, default_after_s=rt.settings.stale_run_after_s)

    @app.task(name=TASK_PURGE, shared=False, acks_late=False)
    def purge_idempotency() -> int:
        from engine.idempotency import purge

        return purge(runtime_for(app).db)
