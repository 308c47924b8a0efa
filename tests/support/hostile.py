"""Helpers of the hostile-tenant suite: a real ``quorum api`` process, raw event streams,
latency percentiles, and a listener that records whether anything called it."""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from tests.support.fleet import Fleet, Worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, done: Callable[[], object], timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def api_process(fleet: Fleet, extra_env: dict[str, str] | None = None) -> tuple[Worker, str]:
    """``quorum api`` (gunicorn, one worker) in its own process, answering."""
    port = free_port()
    w = fleet.start_api_process(port, extra_env)
    base = f"http://127.0.0.1:{port}"
    wait_for("quorum api to answer", lambda: _answers(base), timeout=30)
    return w, base


def stop_api(fleet: Fleet, w: Worker) -> None:
    """Stop a ``quorum api`` process the way an operator does: SIGTERM to gunicorn, which
    stops its workers first (a SIGKILL would leave a worker it forked after a crash holding
    the output pipe, and closing the pipe under its reader would then wait forever)."""
    w.proc.terminate()
    w.proc.wait(timeout=60)
    if w.proc.stdout is not None:
        w.proc.stdout.close()
    if w in fleet.workers:
        fleet.workers.remove(w)


@dataclass
class RawStream:
    """One ``GET .../events`` on a socket of its own: cheap to hold by the hundred."""

    sock: socket.socket
    status: int
    head: str
    seen: bytes = b""

    def read_until(self, marker: bytes, timeout: float = 10) -> bytes:
        self.sock.settimeout(timeout)
        while marker not in self.seen:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"the stream ended before {marker!r}: {self.seen!r}")
            self.seen += chunk
        return self.seen

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def open_stream(base: str, key: str, run_id: str | None, timeout: float = 10) -> RawStream:
    """A run's stream, or (``run_id`` None) the organization's run feed."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    path = "/v1/workflows/runs/events" if run_id is None else f"/v1/workflows/runs/{run_id}/events"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
    )
    sock.sendall(request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    status = int(text.split(" ", 2)[1]) if text else 0
    return RawStream(sock=sock, status=status, head=text, seen=rest)


@contextlib.contextmanager
def streams(base: str, keys: list[str], run_id: str, per_key: int) -> Iterator[list[RawStream]]:
    opened: list[RawStream] = []
    try:
        for key in keys:
            for _ in range(per_key):
                s = open_stream(base, key, run_id)
                opened.append(s)
                assert s.status == 200, s.head + s.seen.decode(errors="replace")
        for s in opened:
            s.read_until(b"event: run")  # served, not queued somewhere
        yield opened
    finally:
        for s in opened:
            s.close()


def p99_ms(client: httpx.Client, path: str, *, n: int = 200) -> float:
    """The 99th percentile latency of ``n`` sequential GETs (each must answer 200)."""
    samples: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        r = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, r.text
    return statistics.quantiles(samples, n=100)[98]


@dataclass
class Listener:
    """A TCP listener that accepts connections and never answers: counts who calls."""

    sock: socket.socket = field(default_factory=socket.socket)
    calls: list[bytes] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Listener:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/evil.json"

    def _serve(self) -> None:
        held: list[socket.socket] = []
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(1)
            with contextlib.suppress(OSError):
                self.calls.append(conn.recv(4096))
            held.append(conn)  # never answered, never closed while the test runs
        for conn in held:
            conn.close()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.sock.close()
