"""Real worker processes, a real HTTP server and a client for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from api.app import create_app
from engine.auth import issue_key
from engine.db.session import Database
from engine.settings import Settings
from tests.support.functions import SPEC

ROOT = Path(__file__).resolve().parents[2]
TERMINAL_RUN = {"completed", "failed", "cancelled", "aborted_looping_risk"}
TERMINAL_STEP = {"completed", "error", "cancelled", "skipped"}


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    ready_text: str = " ready."

    def pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.ready_text in line:
                self.ready.set()

    def child_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


@dataclass
class Fleet:
    """A database, a Redis db, N Celery worker processes and the API on a real socket."""

    env: dict[str, str]
    settings: Settings
    workers: list[Worker] = field(default_factory=list)
    server: BaseWSGIServer | None = None
    thread: threading.Thread | None = None
    base_url: str = ""
    app: Flask | None = None

    def start_worker(
        self,
        name: str,
        *,
        concurrency: int = 1,
        extra_env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> Worker:
        """``prefix`` runs the worker through another command (``ip netns exec ...``)."""
        return self._start(
            name,
            [
                *(prefix or []),
                sys.executable,
                "-m",
                "quorum.cli",
                "worker",
                "-c",
                str(concurrency),
                "-n",
                f"{name}@%h",
                "--loglevel",
                "INFO",
            ],
            ready_text=" ready.",
            extra_env=extra_env,
        )

    def start_beat(self) -> Worker:
        """Celery beat: the outbox sweeper and the reaper on their schedule."""
        return self._start(
            "beat", [sys.executable, "-m", "quorum.cli", "beat"], ready_text="beat: Starting"
        )

    def start_api_process(self, port: int, extra_env: dict[str, str] | None = None) -> Worker:
        """The API under gunicorn in its own process (``quorum api``)."""
        return self._start(
            f"api-{port}",
            [sys.executable, "-m", "quorum.cli", "api", "--port", str(port), "--workers", "1"],
            ready_text="Booting worker",
            extra_env=extra_env,
        )

    def _start(
        self,
        name: str,
        args: list[str],
        *,
        ready_text: str,
        extra_env: dict[str, str] | None = None,
    ) -> Worker:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        w = Worker(name=name, proc=proc, ready_text=ready_text)
        threading.Thread(target=w.pump, daemon=True).start()
        deadline = time.monotonic() + 45
        while not w.ready.wait(0.2) and proc.poll() is None and time.monotonic() < deadline:
            pass
        if not w.ready.is_set():
            proc.kill()
            raise RuntimeError(f"{name} did not start:\n{''.join(w.lines[-40:])}")
        self.workers.append(w)
        return w

    def kill_worker(self, w: Worker) -> None:
        """SIGKILL a worker and its pool children: nothing is acknowledged or given back."""
        children = w.child_pids()
        os.kill(w.proc.pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        w.proc.wait()
        if w.proc.stdout:
            w.proc.stdout.close()
        self.workers.remove(w)

    def stop_workers(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            try:
                w.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            if w.proc.stdout:
                w.proc.stdout.close()
        self.workers.clear()

    def serve(self) -> str:
        app = create_app(self.settings)
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        return self.base_url

    def close(self) -> None:
        self.stop_workers()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.app is not None:
            self.app.extensions["quorum"].close()

    def new_key(self, org: str) -> str:
        db = Database(self.settings)
        try:
            with db.transaction() as s:
                return issue_key(s, org).key
        finally:
            db.close()


def fleet_env(database_url: str, broker_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env.update(
        QUORUM_DATABASE_URL=database_url,
        QUORUM_BROKER_URL=broker_url,
        QUORUM_DATA_DIR=str(data_dir),
        QUORUM_FUNCTIONS=SPEC,
        QUORUM_LOG_JSON="false",
        QUORUM_TEST_EFFECTS_DIR=str(data_dir),
        QUORUM_QUEUE=f"quorum-test-{uuid.uuid4().hex[:8]}",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


@contextmanager
def running_fleet(env: dict[str, str], *, workers: int = 2) -> Iterator[Fleet]:
    settings = Settings.from_env(env)
    fleet = Fleet(env=env, settings=settings)
    try:
        for i in range(workers):
            fleet.start_worker(f"w{i + 1}")
        yield fleet
    finally:
        fleet.close()


class Api:
    """An HTTP client for one organization's key, with helpers to wait for results."""

    def __init__(self, base_url: str, key: str) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post(path, json=body, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def create_workflow(self, graph: dict[str, Any], name: str = "wf") -> dict[str, Any]:
        r = self.post("/v1/workflows", {"name": name, **graph})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def start_run(self, workflow_id: str, inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
        r = self.post("/v1/workflows/runs", {"workflow_id": workflow_id, "inputs": inputs, **extra})
        assert r.status_code == 202, r.text
        return dict(r.json())

    def wait_run(
        self,
        run_id: str,
        *,
        timeout: float = 60,
        until: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        done = until or (lambda run: run["status"] in TERMINAL_RUN)
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(f"/v1/workflows/runs/{run_id}").json()
            if done(run):
                return dict(run)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {run_id} still {run['status']} after {timeout}s: {run['progress']}"
                )
            time.sleep(0.1)

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = None
        while True:
            params = {"limit": 200, **({"after": after} if after else {})}
            page = self.get(f"/v1/workflows/runs/{run_id}/steps", params=params).json()
            out.extend(page["data"])
            if not page["has_more"]:
                return out
            after = page["next_after"]

    def wait_execution(self, execution_id: str, *, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            ex = self.get(f"/v1/workflows/blocks/executions/{execution_id}").json()
            if ex["lifecycle"]["status"] in TERMINAL_STEP:
                return dict(ex)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"execution {execution_id} still {ex['lifecycle']} after {timeout}s"
                )
            time.sleep(0.1)


def by_step_id(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["step_id"]: s for s in steps}
