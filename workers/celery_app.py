"""The one Celery app, built from the same settings as everything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery

from engine.settings import Settings
from workers import faults
from workers.broker import TRANSPORT
from workers.names import TASK_PURGE, TASK_REAP, TASK_SWEEP
from workers.tasks import register


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("quorum", broker=settings.effective_broker_url, set_as_current=False)
    if settings.effective_broker_url.startswith("redis://"):
        # kombu's Redis transport with the fix that keeps a worker alive across a Redis
        # restart (see workers/broker.py).
        app.conf.broker_transport = TRANSPORT
    app.conf.update(
        # At least once: a message is acknowledged only after the task ran, and a worker
        # process that dies mid-task gives its message back instead of losing it.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # PostgreSQL holds all state: no result backend, no result round trips.
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue,
        # Flower shows every task by its quorum.* name, with state changes.
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # A publish to a dead broker must fail fast (the outbox retries), not hang a request.
        broker_transport_options=_transport_options(settings),
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        broker_pool_limit=10,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_soft_shutdown_timeout=10.0,
        worker_enable_soft_shutdown_on_idle=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "outbox-sweep": {"task": TASK_SWEEP, "schedule": sweep_every_s(settings)},
            "stale-run-reaper": {"task": TASK_REAP, "schedule": 60.0},
            "idempotency-purge": {"task": TASK_PURGE, "schedule": 3600.0},
        },
    )
    app.quorum_settings = settings
    register(app)
    faults.install(app, settings)
    return app


def sweep_every_s(settings: Settings) -> float:
    """Often enough to re-publish lost messages, and to notice a lease that ran out soon."""
    return max(2.0, min(settings.outbox_after_s / 2, settings.lease_s / 3))


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.is_embedded_broker:
        root = Path(settings.data_dir) / "broker"
        for sub in ("queue", "processed", "control"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(root / "queue"),
            "data_folder_out": str(root / "queue"),
            "processed_folder": str(root / "processed"),
            "control_folder": str(root / "control"),
            "store_processed": False,
            # The filesystem transport polls; a short interval keeps local runs snappy.
            "polling_interval": 0.05,
        }
    return {
        # Redis redelivers an unacknowledged message after this. The claim drops such a
        # duplicate while the holder's lease is renewed, but each one costs a claim.
        "visibility_timeout": int(max(settings.lease_s * 2, 3600)),
        "socket_timeout": 5,
        "socket_connect_timeout": 3,
    }
