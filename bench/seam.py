"""Every engine, API and worker module the bench calls, imported here and nowhere else.

The engine's internals are being restructured; the bench drives them directly (seed runs
in-process, rows cloned for bulk parents, the API's submit path without HTTP, the
orchestrator's for_each step), so each name it needs is re-exported from this one module.
A rename in the engine is one line here.
"""

from __future__ import annotations

from api.app import create_app
from api.asgi import AccessLogged
from engine.auth import issue_key
from engine.clock import utcnow
from engine.db.migrate import upgrade
from engine.db.models import BlockExecution, Run, Step
from engine.db.session import Database
from engine.execute import Toolbox
from engine.executions import create_execution
from engine.functions import build_registry
from engine.handoff import mark_queued
from engine.ids import new_id
from engine.ports import Dispatcher, Work, WorkKind
from engine.providers.base import Provider
from engine.providers.local import LocalProvider
from engine.run.start import start_run
from engine.settings import Settings
from engine.worker.entry import Worker
from workers.celery_app import create_celery
from workers.dispatch import CeleryDispatcher

__all__ = [
    "AccessLogged",
    "BlockExecution",
    "CeleryDispatcher",
    "Database",
    "Dispatcher",
    "LocalProvider",
    "Provider",
    "Run",
    "Settings",
    "Step",
    "Toolbox",
    "Work",
    "WorkKind",
    "Worker",
    "build_registry",
    "create_app",
    "create_celery",
    "create_execution",
    "issue_key",
    "mark_queued",
    "new_id",
    "start_run",
    "upgrade",
    "utcnow",
]
