"""The core's Dispatcher port on Celery: one producer, many messages, no result backend."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from engine.ports import Work, WorkKind
from workers.celery_app import TASK_ATTEMPT, TASK_EXECUTION, TASK_STEP

TASK_FOR = {
    WorkKind.STEP: TASK_STEP,
    WorkKind.EXECUTION: TASK_EXECUTION,
    WorkKind.ATTEMPT: TASK_ATTEMPT,
}


def task_id(work: Work) -> str:
    # Deterministic ids: a re-published row keeps its task id, so Flower shows one task
    # and a revoke reaches every copy of the message.
    return f"{work.kind}-{work.id}"


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def dispatch(self, work: Sequence[Work]) -> None:
        if not work:
            return
        # One connection and channel for the whole batch: a fan-out of a thousand steps is
        # a thousand LPUSHes on one socket, not a thousand connection checkouts.
        with self.app.producer_or_acquire() as producer:
            for w in work:
                self.app.send_task(
                    TASK_FOR[w.kind],
                    args=[w.id],
                    task_id=task_id(w),
                    producer=producer,
                    ignore_result=True,
                    countdown=w.delay_s or None,
                )

    def close(self) -> None:
        self.app.close()

    def revoke(self, work: Sequence[Work]) -> None:
        if work:
            self.app.control.revoke([task_id(w) for w in work], terminate=True, signal="SIGTERM")
