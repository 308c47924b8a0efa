"""Per-process runtime of a worker: database, provider, dispatcher and orchestrator.

Built lazily in the process that runs tasks (after the prefork fork), never at import.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from celery import Celery

from engine.db.session import Database
from engine.execute import Toolbox
from engine.functions import build_registry
from engine.orchestrator import Orchestrator
from engine.providers.base import Provider, ProviderConfig
from engine.providers.factory import build_provider
from engine.settings import Settings
from workers.dispatch import CeleryDispatcher
from workers.events import event_bus

HOSTNAME = socket.gethostname()


def identity() -> str:
    return f"{HOSTNAME}:{os.getpid()}"


def holder_alive(holder: str) -> bool | None:
    host, _, pid_text = holder.rpartition(":")
    if host != HOSTNAME or not pid_text.isdigit():
        return None  # another machine: only the lease can tell
    pid = int(pid_text)
    if pid == os.getpid():
        # Prefork runs one task per process: if this process holds the row, the attempt
        # that claimed it is over (it crashed or is being retried).
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(kw_only=True)
class Runtime:
    settings: Settings
    db: Database
    provider: Provider
    orchestrator: Orchestrator
    dispatcher: CeleryDispatcher

    def close(self) -> None:
        self.provider.close()
        self.db.close()


_runtimes: dict[int, Runtime] = {}


def runtime_for(app: Celery) -> Runtime:
    pid = os.getpid()
    rt = _runtimes.get(pid)
    if rt is None:
        _runtimes.clear()  # entries inherited from a parent process are not ours
        settings: Settings = app.quorum_settings
        db = Database(settings, pool_size=2)
        provider = build_provider(ProviderConfig.from_settings(settings))
        dispatcher = CeleryDispatcher(app)
        tools = Toolbox(functions=build_registry(settings.functions), provider=provider)
        orchestrator = Orchestrator(
            db=db,
            dispatcher=dispatcher,
            tools=tools,
            settings=settings,
            worker=identity(),
            holder_alive=holder_alive,
            events=event_bus(settings),
        )
        rt = Runtime(
            settings=settings,
            db=db,
            provider=provider,
            orchestrator=orchestrator,
            dispatcher=dispatcher,
        )
        _runtimes[pid] = rt
    return rt
