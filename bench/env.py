"""The bench's private world, created per invocation and removed afterwards.

* a fresh PostgreSQL database (``quorum_bench_<hex>``) on the server named by
  ``QUORUM_BENCH_DATABASE_URL`` (else ``QUORUM_TEST_DATABASE_URL``, else the local default),
  migrated to head and dropped at the end; peers get their own databases on the same
  server (``quorum_bench_<hex>_<peer>``), dropped too;
* a private ``redis-server`` on a free loopback port when the binary is installed, else a
  Redis database named by ``QUORUM_BENCH_REDIS_URL`` (else ``QUORUM_TEST_REDIS_URL``) whose
  keys are flushed before and after (so it must not be shared with anything else);
* a temporary directory for logs and data; every process started here (workers, gunicorn,
  the chat server) is stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench.seam import Settings, upgrade

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"


class BenchError(RuntimeError):
    """The bench cannot run here (a service is missing) or a scenario broke."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A child process whose output goes to a log file (never to a pipe we must drain)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def child_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in out.stdout.split()]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                children = self.child_pids()
                self.proc.kill()
                for pid in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.wait()


@dataclass
class World:
    """Services, settings and processes of one bench invocation."""

    tmp: Path
    admin_url: str
    db_name: str
    database_url: str
    broker_url: str
    redis_server: Any = None  # tests.support.redis_server.RedisServer when private
    flush_redis: bool = False
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    procs: list[Proc] = field(default_factory=list)
    extra_dbs: list[str] = field(default_factory=list)

    # Queues: the engine's workers, the baseline's workers, and sinks nobody consumes
    # (publish-only scenarios and the API scenarios, whose messages are purged).
    @property
    def engine_queue(self) -> str:
        return f"bench-engine-{self.tag}"

    @property
    def baseline_queue(self) -> str:
        return f"bench-baseline-{self.tag}"

    @property
    def sink_queue(self) -> str:
        return f"bench-sink-{self.tag}"

    @property
    def result_backend_url(self) -> str:
        # Only the baseline chord (S3) stores results (Celery chords need a result backend);
        # its keys are prefixed celery-task-meta-, so the broker's database can hold them.
        return self.broker_url

    def env(self, queue: str | None = None, **extra: str) -> dict[str, str]:
        """Environment of an engine process (worker, gunicorn) of this world."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
        env.update(
            QUORUM_DATABASE_URL=self.database_url,
            QUORUM_BROKER_URL=self.broker_url,
            QUORUM_DATA_DIR=str(self.tmp / "data"),
            QUORUM_QUEUE=queue or self.engine_queue,
            QUORUM_LOG_JSON="false",
            QUORUM_LOG_LEVEL="INFO",
            PYTHONPATH=str(ROOT),
        )
        env.update(extra)
        return env

    def settings(self, queue: str | None = None, **extra: str) -> Settings:
        return Settings.from_env(self.env(queue, **extra))

    def start(
        self,
        name: str,
        args: list[str],
        *,
        env: dict[str, str],
        ready: Callable[[Proc], bool],
        timeout: float = 60.0,
    ) -> Proc:
        log_path = self.tmp / f"{name}.log"
        fh = log_path.open("wb")
        try:
            popen = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            fh.close()
        proc = Proc(name=name, proc=popen, log_path=log_path)
        self.procs.append(proc)
        deadline = time.monotonic() + timeout
        while not ready(proc):
            if not proc.alive() or time.monotonic() > deadline:
                proc.stop(timeout=5)
                raise BenchError(f"{name} did not start:\n{proc.log_tail()}")
            time.sleep(0.1)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def create_database(self, suffix: str) -> str:
        """Another fresh database on the same server (a peer's own), dropped at the end."""
        name = f"{self.db_name}_{suffix}"
        _admin_exec(self.admin_url, f'CREATE DATABASE "{name}"')
        self.extra_dbs.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker_url)

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        self.procs.clear()
        if self.flush_redis:
            with contextlib.suppress(Exception), redis.Redis.from_url(self.broker_url) as client:
                client.flushdb()
        if self.redis_server is not None:
            with contextlib.suppress(Exception):
                self.redis_server.stop()
        for name in self.extra_dbs:
            with contextlib.suppress(Exception):
                _admin_exec(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin_exec(self.admin_url, f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)


def log_contains(text_: str) -> Callable[[Proc], bool]:
    def check(proc: Proc) -> bool:
        try:
            return text_ in proc.log_path.read_text(errors="replace")
        except OSError:
            return False

    return check


def http_ok(url: str) -> Callable[[Proc], bool]:
    def check(proc: Proc) -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned), or time out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _admin_exec(admin_url: str, sql: str) -> None:
    engine = create_engine(
        admin_url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


@contextlib.contextmanager
def world() -> Iterator[World]:
    admin_url = (
        os.environ.get("QUORUM_BENCH_DATABASE_URL")
        or os.environ.get("QUORUM_TEST_DATABASE_URL")
        or DEFAULT_DATABASE_URL
    )
    try:
        _admin_exec(admin_url, "SELECT 1")
    except Exception as exc:
        raise BenchError(
            f"PostgreSQL is not reachable at {_redacted(admin_url)} ({type(exc).__name__}); "
            "start it (see README: .ci/run starts PostgreSQL and Redis) or set "
            "QUORUM_BENCH_DATABASE_URL"
        ) from None
    tmp = Path(tempfile.mkdtemp(prefix="quorum-bench-"))
    (tmp / "data").mkdir()
    redis_server: Any = None
    flush = False
    if shutil.which("redis-server"):
        from tests.support.redis_server import RedisServer

        redis_server = RedisServer()
        broker_url = redis_server.url
    else:
        broker_url = (
            os.environ.get("QUORUM_BENCH_REDIS_URL")
            or os.environ.get("QUORUM_TEST_REDIS_URL")
            or DEFAULT_REDIS_URL
        )
        flush = True
    try:
        with redis.Redis.from_url(broker_url, socket_connect_timeout=2) as client:
            client.ping()
            if flush:
                client.flushdb()
    except Exception as exc:
        if redis_server is not None:
            redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        raise BenchError(f"Redis is not reachable at {broker_url} ({type(exc).__name__})") from None
    db_name = f"quorum_bench_{secrets.token_hex(5)}"
    _admin_exec(admin_url, f'CREATE DATABASE "{db_name}"')
    database_url = make_url(admin_url).set(database=db_name).render_as_string(hide_password=False)
    w = World(
        tmp=tmp,
        admin_url=admin_url,
        db_name=db_name,
        database_url=database_url,
        broker_url=broker_url,
        redis_server=redis_server,
        flush_redis=flush,
    )
    try:
        upgrade(database_url)
        yield w
    finally:
        w.close()


def python() -> str:
    return sys.executable
