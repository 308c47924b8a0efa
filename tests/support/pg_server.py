"""A private PostgreSQL server that a test starts, restarts and stops (``initdb``, ``pg_ctl``).

The chaos harness restarts PostgreSQL itself, not only its backends. The server binaries
refuse to run as root, so when the test runs as root they run as the ``postgres`` user
(``runuser``), in a data directory that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

OS_USER = "postgres"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    return Path(pg_ctl).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """``listen`` addresses; trusted connections from ``trusted`` networks (CIDR)."""

    def __init__(
        self, *, listen: Sequence[str] = ("127.0.0.1",), trusted: Sequence[str] = ()
    ) -> None:
        self.bin = _bin_dir()
        self.port = _free_port()
        self.listen = tuple(listen)
        self.root = Path(tempfile.mkdtemp(prefix="quorum-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, user=OS_USER)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        conf = {
            "listen_addresses": f"'{','.join(self.listen)}'",
            "port": str(self.port),
            "max_connections": "300",
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "on",
            "log_min_messages": "warning",
        }
        with (self.data / "postgresql.conf").open("a") as fh:
            fh.writelines(f"{k} = {v}\n" for k, v in conf.items())
        with (self.data / "pg_hba.conf").open("a") as fh:
            fh.writelines(f"host all all {net} trust\n" for net in trusted)
        self.start()

    def url(self, host: str = "127.0.0.1", database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{host}:{self.port}/{database}"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", OS_USER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, cwd=self.root)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clients disconnected, clean shutdown) or ``immediate`` (as a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, *, down_s: float = 0.0, mode: str = "fast") -> None:
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    def wait_ready(self, timeout: float = 60) -> None:
        engine = create_engine(self.url(), poolclass=NullPool)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    with engine.connect() as conn:
                        conn.execute(text("SELECT 1"))
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            engine.dispose()

    def create_database(self, name: str) -> str:
        engine = create_engine(self.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(database=name)

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
