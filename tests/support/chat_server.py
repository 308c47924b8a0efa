"""A scriptable chat-completions server on loopback, for provider and consensus tests.

In-process::

    with ChatServer(lambda body: ChatReply(content={"total": 3})) as server:
        provider = build_provider(ProviderConfig(kind="openai", base_url=server.base_url))

As a separate process, so Celery worker processes can reach it too::

    python -m tests.support.chat_server --answers-file answers.json --port 0 [--delay-ms 50]

prints ``PORT <n>`` as its first line and serves until SIGTERM/SIGINT, answering request
``seed`` i with ``answers[i % len(answers)]``. :func:`chat_server_process` wraps that.

The answers file is either that list, or a :class:`SeedScript` as an object
``{"answers": [...], "statuses": {"2": 500, "*": 503}, "models": {name: {...}}}``: a seed
listed in ``statuses`` (``"*"``: every seed) is answered with that HTTP status instead, and a
request whose ``model`` is a key of ``models`` follows that nested script, so one server can
serve several scenarios at once. ``GET /_requests`` lists every request received (body and
arrival time); :func:`recorded_requests` reads it.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAT_PATH = "/v1/chat/completions"
REQUESTS_PATH = "/_requests"


@dataclass(frozen=True, kw_only=True)
class ChatReply:
    status: int = 200
    # JSON-serialised into message.content, or sent verbatim (must be a str) when ``raw``.
    content: Any = None
    raw: bool = False
    delay_s: float = 0.0
    # None leaves the field out of ``usage`` (and no usage at all when both are None).
    prompt_tokens: int | None = 11
    completion_tokens: int | None = 7
    model: str | None = None
    # Replaces the whole response body, for malformed-envelope tests.
    body: str | None = None


Responder = Callable[[dict[str, Any]], ChatReply]


def cycle_answers(answers: Sequence[Any], *, delay_s: float = 0.0) -> Responder:
    """Answer by the request's ``seed``: stable under parallel calls from any process."""
    fixed = list(answers)
    if not fixed:
        raise ValueError("cycle_answers needs at least one answer")

    def responder(body: dict[str, Any]) -> ChatReply:
        seed = body.get("seed", 0)
        index = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
        return ChatReply(content=fixed[index % len(fixed)], delay_s=delay_s)

    return responder


@dataclass(frozen=True, kw_only=True)
class SeedScript:
    """Answers by seed, with optional failing seeds, and per-model sub-scripts."""

    answers: Sequence[Any]
    # seed -> HTTP status to answer with instead ("*" stands for every seed)
    statuses: Mapping[str, int] = field(default_factory=dict)
    models: Mapping[str, SeedScript] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.answers and "*" not in self.statuses:
            raise ValueError("a SeedScript needs at least one answer (or a '*' status)")

    def to_json(self) -> dict[str, Any]:
        return {
            "answers": list(self.answers),
            "statuses": dict(self.statuses),
            "models": {name: sub.to_json() for name, sub in self.models.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> SeedScript:
        if isinstance(data, list):
            return cls(answers=data)
        if not isinstance(data, Mapping) or "answers" not in data:
            return cls(answers=[data])
        return cls(
            answers=list(data.get("answers") or []),
            statuses={str(k): int(v) for k, v in (data.get("statuses") or {}).items()},
            models={str(k): cls.from_json(v) for k, v in (data.get("models") or {}).items()},
        )


def scripted(script: SeedScript, *, delay_s: float = 0.0) -> Responder:
    """Answer by the request's ``model`` (sub-script) and ``seed`` (answer or status)."""

    def responder(body: dict[str, Any]) -> ChatReply:
        chosen = script.models.get(str(body.get("model")), script)
        seed = body.get("seed", 0)
        index = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
        status = chosen.statuses.get(str(index), chosen.statuses.get("*"))
        if status is not None:
            return ChatReply(status=status, delay_s=delay_s)
        return ChatReply(content=chosen.answers[index % len(chosen.answers)], delay_s=delay_s)

    return responder


def in_order(*replies: ChatReply) -> Responder:
    """The n-th request gets ``replies[n]``; the last reply repeats once they run out."""
    if not replies:
        raise ValueError("in_order needs at least one reply")
    lock = threading.Lock()
    served = [0]

    def responder(body: dict[str, Any]) -> ChatReply:
        with lock:
            index = served[0]
            served[0] += 1
        return replies[min(index, len(replies) - 1)]

    return responder


def render_reply(reply: ChatReply, request: dict[str, Any]) -> tuple[int, str]:
    if reply.body is not None:
        return reply.status, reply.body
    if reply.status >= 400:
        error = {"message": f"scripted failure {reply.status}", "type": "server_error"}
        return reply.status, json.dumps({"error": error})
    if reply.raw:
        if not isinstance(reply.content, str):
            raise TypeError("a raw ChatReply needs str content")
        content = reply.content
    else:
        content = json.dumps(reply.content)
    envelope: dict[str, Any] = {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or request.get("model") or "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }
    usage = {
        key: value
        for key, value in (
            ("prompt_tokens", reply.prompt_tokens),
            ("completion_tokens", reply.completion_tokens),
        )
        if value is not None
    }
    if usage:
        usage["total_tokens"] = sum(usage.values())
        envelope["usage"] = usage
    return reply.status, json.dumps(envelope)


class _HTTPServer(ThreadingHTTPServer):
    # Non-daemon handler threads are joined by server_close(), so nothing outlives close().
    daemon_threads = False
    block_on_close = True
    owner: ChatServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        # A client that timed out has hung up before a delayed answer: expected, not a fault.
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        self.owner._record_error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    # One request per connection, so shutdown never waits on an idle keep-alive socket.
    protocol_version = "HTTP/1.0"
    timeout = 10.0

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        owner = cast(_HTTPServer, self.server).owner
        if self.path.rstrip("/") != REQUESTS_PATH:
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
            return
        self._send(200, json.dumps({"requests": owner.timed_requests}))

    def do_POST(self) -> None:
        owner = cast(_HTTPServer, self.server).owner
        if self.path.rstrip("/") != CHAT_PATH:
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            self._send(400, json.dumps({"error": {"message": "request body is not JSON"}}))
            return
        if not isinstance(body, dict):
            self._send(400, json.dumps({"error": {"message": "request body is not an object"}}))
            return
        owner._record(body, self.headers.get("Authorization"))
        try:
            reply = owner._responder(body)
            status, text = render_reply(reply, body)
        except Exception:
            owner._record_error(traceback.format_exc())
            self._send(500, json.dumps({"error": {"message": "responder failed"}}))
            return
        if reply.delay_s > 0:
            # Waiting on the stop event lets close() cut a long delay short.
            owner._stopping.wait(reply.delay_s)
        self._send(status, text)

    def _send(self, status: int, text: str) -> None:
        payload = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class ChatServer:
    """A chat-completions endpoint at ``base_url`` (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, responder: Responder, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._responder = responder
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._received_at: list[float] = []
        self._authorizations: list[str | None] = []
        self._errors: list[str] = []
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ChatServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        if self._httpd is not None:
            return
        httpd = _HTTPServer((self._host, self._port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"chat-server-{self.port}",
        )
        self._thread.start()

    def close(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        httpd.shutdown()
        thread.join()
        httpd.server_close()
        self._httpd = None
        self._thread = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("ChatServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request body received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def timed_requests(self) -> list[dict[str, Any]]:
        """``{"body", "received_at"}`` (epoch seconds) per request, in arrival order."""
        with self._lock:
            return [
                {"body": body, "received_at": at}
                for body, at in zip(self._requests, self._received_at, strict=True)
            ]

    @property
    def authorizations(self) -> list[str | None]:
        """The Authorization header of each request (None when absent), parallel to requests."""
        with self._lock:
            return list(self._authorizations)

    @property
    def errors(self) -> list[str]:
        """Tracebacks of responder or handler failures, for debugging a confusing test."""
        with self._lock:
            return list(self._errors)

    def _record(self, body: dict[str, Any], authorization: str | None) -> None:
        with self._lock:
            self._requests.append(body)
            self._received_at.append(time.time())
            self._authorizations.append(authorization)

    def _record_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)


@contextmanager
def chat_server_process(
    answers: Sequence[Any] | SeedScript, *, delay_ms: float = 0.0
) -> Iterator[str]:
    """Run the server as a subprocess answering by seed; yield its base URL."""
    script = answers if isinstance(answers, SeedScript) else SeedScript(answers=list(answers))
    with tempfile.TemporaryDirectory(prefix="quorum-chat-") as tmp:
        answers_file = Path(tmp) / "answers.json"
        answers_file.write_text(json.dumps(script.to_json()), encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "tests.support.chat_server",
            "--answers-file",
            str(answers_file),
            "--port",
            "0",
            "--delay-ms",
            str(delay_ms),
        ]
        with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as process:
            try:
                assert process.stdout is not None
                first = process.stdout.readline().strip()
                if not first.startswith("PORT "):
                    raise RuntimeError(f"chat server did not start (first line {first!r})")
                yield f"http://127.0.0.1:{int(first.split()[1])}/v1"
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def recorded_requests(base_url: str, *, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """What a server (in-process or not) has received: ``{"body", "received_at"}`` each."""
    root = base_url.rstrip("/").removesuffix("/v1")
    with urllib.request.urlopen(root + REQUESTS_PATH, timeout=timeout_s) as response:
        payload = json.loads(response.read())
    return list(payload["requests"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scripted chat-completions server for tests.")
    parser.add_argument("--answers-file", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)

    try:
        script = SeedScript.from_json(json.loads(args.answers_file.read_text(encoding="utf-8")))
    except ValueError as exc:
        parser.error(f"bad answers file: {exc}")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    responder = scripted(script, delay_s=args.delay_ms / 1000)
    with ChatServer(responder, host=args.host, port=args.port) as server:
        print(f"PORT {server.port}", flush=True)
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
