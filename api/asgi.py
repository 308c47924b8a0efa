"""The API as an ASGI application: what ``quorum api`` serves (gunicorn, uvicorn workers).

Ordinary routes are the Flask application, run on a bounded pool of threads
(``QUORUM_API_THREADS``) through a WSGI adapter. A run's event stream is first answered by
its Flask route too (authentication, rate limit, 404, resume point: the same code and the
same problem answers as everywhere); when that succeeds, the route hands the stream over
(a marker header, honoured only with this process's secret token) and the stream is
served on the event loop by ``api.streams``, so that open streams hold no thread.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from a2wsgi import WSGIMiddleware

from api.app import create_app
from api.routes.events import HEARTBEAT_S, MAX_STREAM_S, STREAM_HEADER
from api.runtime import ApiRuntime
from api.streams import Caps, FeedStream, Notifier, Stream, StreamsFull, refuse
from engine.settings import Settings
from workers.events import redis_url_of

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

EVENTS_PATH = re.compile(r"^/v1/workflows/runs/(?:[^/]+/)?events$")
_MARKER = STREAM_HEADER.lower().encode()
access_log = logging.getLogger("quorum.access")  # handlers: see api.asgi_worker


class QuorumAsgi:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.flask = create_app(settings)
        self.runtime: ApiRuntime = self.flask.extensions["quorum"]
        # Only a request that comes through here (with this token) may hand its stream over.
        self.runtime.stream_token = secrets.token_hex(16)
        self.wsgi = WSGIMiddleware(self.flask, workers=settings.api_threads)  # type: ignore[arg-type]
        self.reader = ThreadPoolExecutor(max_workers=4, thread_name_prefix="quorum-events")
        self.caps = Caps(
            per_key=settings.max_streams_per_key, per_process=settings.max_streams_per_process
        )
        self.notifier = Notifier(redis_url_of(settings))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and EVENTS_PATH.match(scope["path"]):
            await self._events(scope, receive, send)
        else:
            await self.wsgi(scope, receive, send)  # type: ignore[arg-type]

    async def _events(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = (self.runtime.stream_token or "").encode()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != _MARKER]
        inner = {**scope, "headers": [*headers, (_MARKER, token)]}
        handed: list[Message] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start" and any(
                k.lower() == _MARKER for k, _ in message.get("headers", [])
            ):
                handed.append(message)
            elif not handed:
                await send(message)

        await self.wsgi(inner, receive, capture)  # type: ignore[arg-type]
        if not handed:
            return  # the route answered itself: a problem (401, 404, 422, 429...)
        start = handed[0]
        marker = next(v for k, v in start["headers"] if k.lower() == _MARKER).decode()
        kind, target, after, key = marker.split(" ")
        # The route's empty body had a length; the stream has none.
        rest = [
            (k, v) for k, v in start["headers"] if k.lower() not in (_MARKER, b"content-length")
        ]
        try:
            with self.caps.hold(key):
                await send({**start, "headers": rest})
                await send(_first(kind, target))
                await self._stream(kind, target, int(after)).run(send, receive)
        except StreamsFull as full:
            limits = [(k, v) for k, v in rest if k.lower().startswith(b"ratelimit-")]
            await refuse(send, 429, full.detail, limits)

    def _stream(self, kind: str, target: str, after: int) -> Stream | FeedStream:
        if kind == "feed":
            return FeedStream(
                org_id=target,
                after=None if after < 0 else after,
                db=self.runtime.db,
                reader=self.reader,
                heartbeat_s=HEARTBEAT_S,
                max_s=MAX_STREAM_S,
            )
        return Stream(
            run_id=target,
            after=after,
            db=self.runtime.db,
            reader=self.reader,
            notifier=self.notifier,
            heartbeat_s=HEARTBEAT_S,
            max_s=MAX_STREAM_S,
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.notifier.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.notifier.close()
                self.reader.shutdown(wait=False, cancel_futures=True)
                with contextlib.suppress(Exception):
                    self.runtime.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _first(kind: str, target: str) -> Message:
    # Sent at once, so that the client has the headers before the first event.
    text = f": run {target}\nretry: 2000\n\n" if kind == "run" else ": runs\nretry: 2000\n\n"
    return {"type": "http.response.body", "body": text.encode(), "more_body": True}


class AccessLogged:
    """One access line per request, in gunicorn's format and, like it, without the query
    string, the Basic-auth user or any header but the user agent (api/gunicorn_conf.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        seen = {"status": 0, "size": 0}

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["size"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            _access(scope, seen["status"], seen["size"], time.monotonic() - started)


def _access(scope: Scope, status: int, size: int, seconds: float) -> None:
    client = scope.get("client") or ("-", 0)
    agent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"user-agent"), "-")
    when = time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
    version = scope.get("http_version", "1.1")
    access_log.info(
        '%s %s "%s %s HTTP/%s" %s %s %.6f "%s"',
        client[0],
        when,
        scope["method"],
        scope["path"],
        version,
        status,
        size,
        seconds,
        agent,
    )


def create_asgi_app(settings: Settings | None = None) -> ASGIApp:
    return AccessLogged(QuorumAsgi(settings or Settings.from_env()))
