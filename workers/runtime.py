"""Per-process runtime of a worker: database, provider, dispatcher and worker wing.

Built lazily in the process that runs tasks (after the prefork fork), never at import.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass

from celery import Celery

from engine.db.session import Database
from engine.execute import Toolbox
from engine.functions import build_registry
from engine.leases import LeaseKeeper
from engine.providers.base import Provider, ProviderConfig
from engine.providers.factory import build_provider
from engine.settings import Settings
from engine.worker.entry import Worker
from workers.dispatch import CeleryDispatcher
from workers.events import event_bus
from workers.metrics import worker_metrics


@functools.cache
def worker_host() -> str:
    """This process's host in worker identities: ``QUORUM_WORKER_HOST``, else the hostname
    and the network namespace (``vm~net4026531833``).

    Processes in two network namespaces of one machine (``ip netns exec``, containers
    sharing a hostname) can be cut off from the database apart, so they count as two
    hosts: a process's pid is checked for liveness only by processes of its own host.
    """
    configured = Settings.from_env().worker_host
    if configured:
        return configured
    host = socket.gethostname()
    try:
        link = os.readlink("/proc/self/ns/net")  # "net:[4026531833]"
    except OSError:
        return host  # not Linux
    return f"{host}~net{link.removeprefix('net:[').rstrip(']')}"


def identity() -> str:
    return f"{worker_host()}:{os.getpid()}"


def holder_alive(holder: str) -> bool | None:
    host, _, pid_text = holder.rpartition(":")
    if host != worker_host() or not pid_text.isdigit():
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
    worker: Worker
    dispatcher: CeleryDispatcher
    leases: LeaseKeeper

    def close(self) -> None:
        self.leases.stop()
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
        # Started here, in the process that runs tasks (after the prefork fork).
        leases = LeaseKeeper(db, worker=identity(), lease_s=settings.lease_s)
        leases.start()
        worker = Worker(
            db=db,
            dispatcher=dispatcher,
            tools=tools,
            settings=settings,
            worker=identity(),
            holder_alive=holder_alive,
            events=event_bus(settings),
            leases=leases,
            metrics=worker_metrics(settings),
        )
        rt = Runtime(
            settings=settings,
            db=db,
            provider=provider,
            worker=worker,
            dispatcher=dispatcher,
            leases=leases,
        )
        _runtimes[pid] = rt
    return rt
