"""Run event streams served on the event loop, so that an open stream holds no thread.

Under ``quorum api`` (see ``api.asgi``) a ``GET .../events`` is first answered by the Flask
route as any request (authentication, rate limit, 404, the resume point), on a worker
thread for a few milliseconds; then the stream itself lives here, as a coroutine:

* **caps**: at most ``max_streams_per_key`` open streams per API key and
  ``max_streams_per_process`` per API process; past either, ``429`` with ``Retry-After``;
* **wake-ups**: one Redis pub/sub connection per process (``redis.asyncio``) wakes the
  streams of a run when a worker notifies it; without Redis the streams poll;
* **database reads**: each read of new events is one short transaction on a small thread
  pool of its own (the request threads are never used);
* **departures**: a client that goes away is noticed at once (the ASGI ``http.disconnect``),
  not at the next keepalive write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aredis

from api.problems import PROBLEM_TYPE, SLUGS
from engine.db.session import Database
from engine.eventstream import StoredEvent, read_batch
from engine.runfeed import end_position, read_org_batch
from workers.events import CHANNEL

log = logging.getLogger("quorum.api.streams")
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

RETRY_AFTER_S = 5
POLL_S = 2.0  # without a working subscription, the table is read this often
SUBSCRIBED_POLL_S = 15.0  # with one, the notification is the nudge; this is the safety net
FEED_POLL_S = 1.0  # an organization's feed reads the table this often


class StreamsFull(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class Caps:
    """Open streams per key and per process (one event loop: no lock needed)."""

    per_key: int
    per_process: int
    open: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.open.values())

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        if self.total >= self.per_process:
            raise StreamsFull(
                f"this API process serves {self.per_process} event streams already"
                " (QUORUM_MAX_STREAMS_PER_PROCESS); retry shortly or poll the run"
            )
        if self.open[key] >= self.per_key:
            raise StreamsFull(
                f"this API key has {self.per_key} event streams open"
                " (QUORUM_MAX_STREAMS_PER_KEY); close one or poll the run"
            )
        self.open[key] += 1
        try:
            yield
        finally:
            self.open[key] -= 1
            if self.open[key] <= 0:
                del self.open[key]


class Notifier:
    """One Redis subscription per process, fanned out to the streams of each run."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.waiters: dict[str, set[asyncio.Event]] = {}
        self.connected = False
        self._client: aredis.Redis | None = None
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.url and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._drop()

    @contextlib.asynccontextmanager
    async def watch(self, run_id: str) -> Any:
        wake = asyncio.Event()
        first = run_id not in self.waiters
        self.waiters.setdefault(run_id, set()).add(wake)
        if first:
            await self._command("subscribe", run_id)
        try:
            yield wake
        finally:
            found = self.waiters.get(run_id)
            if found is not None:
                found.discard(wake)
                if not found:
                    del self.waiters[run_id]
                    await self._command("unsubscribe", run_id)

    async def _command(self, name: str, run_id: str) -> None:
        if self._pubsub is None:
            return
        try:
            await getattr(self._pubsub, name)(CHANNEL.format(run_id))
        except (aredis.RedisError, OSError):
            log.debug("pub/sub %s failed; streams poll", name, exc_info=True)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                self._client = aredis.Redis.from_url(self.url, socket_connect_timeout=2)
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                # A channel must be subscribed before listening; this one is never used.
                await self._pubsub.subscribe(CHANNEL.format("-"))
                for run_id in list(self.waiters):
                    await self._pubsub.subscribe(CHANNEL.format(run_id))
                self.connected, delay = True, 0.5
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("event notifications lost; streams poll until Redis is back")
            self.connected = False
            await self._drop()
            self._wake_all()  # a notification may have been lost: everybody reads now
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _listen(self) -> None:
        async for message in self._pubsub.listen():
            if message.get("type") != "message":
                continue
            channel = message["channel"]
            run_id = (channel.decode() if isinstance(channel, bytes) else channel).rsplit(":", 1)[
                -1
            ]
            for wake in self.waiters.get(run_id, ()):
                wake.set()

    def _wake_all(self) -> None:
        for waiters in self.waiters.values():
            for wake in waiters:
                wake.set()

    async def _drop(self) -> None:
        pubsub, client, self._pubsub, self._client = self._pubsub, self._client, None, None
        with contextlib.suppress(Exception):
            if pubsub is not None:
                await pubsub.aclose()
        with contextlib.suppress(Exception):
            if client is not None:
                await client.aclose()


@dataclass
class Stream:
    """One client's stream of one run's events."""

    run_id: str
    after: int
    db: Database
    reader: ThreadPoolExecutor
    notifier: Notifier
    heartbeat_s: float
    max_s: float

    async def run(self, send: Send, receive: Receive) -> None:
        """Send events until the run ends, ``max_s`` passes or the client leaves."""
        await serve(self._follow, send, receive)

    async def _follow(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        started = last_out = loop.time()
        async with self.notifier.watch(self.run_id) as wake:
            while True:
                wake.clear()
                batch = await loop.run_in_executor(
                    self.reader, lambda: read_batch(self.db, self.run_id, self.after)
                )
                for event in batch.events:
                    await _body(send, format_event(event))
                    self.after = event.seq
                    if event.ends_run:
                        return
                now = loop.time()
                if batch.events:
                    last_out = now
                if len(batch.events) >= 500:
                    continue
                if batch.run_terminal or now - started >= self.max_s:
                    return
                if now - last_out >= self.heartbeat_s:
                    await _body(send, ": keepalive\n\n")
                    last_out = now
                poll = SUBSCRIBED_POLL_S if self.notifier.connected else POLL_S
                timeout = min(
                    poll, self.heartbeat_s - (now - last_out), self.max_s - (now - started)
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), max(0.0, timeout))


@dataclass
class FeedStream:
    """One client's feed of its organization's ``run`` events (``engine.runfeed``).

    Polled every :data:`FEED_POLL_S`: notifications are sent per run, and a list page is
    live enough at that pace. Without a resume point it starts at the present, announced
    as an ``id:`` line alone.
    """

    org_id: str
    after: int | None
    db: Database
    reader: ThreadPoolExecutor
    heartbeat_s: float
    max_s: float

    async def run(self, send: Send, receive: Receive) -> None:
        await serve(self._follow, send, receive)

    async def _follow(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        started = last_out = loop.time()
        if self.after is None:
            self.after = await loop.run_in_executor(self.reader, lambda: end_position(self.db))
            await _body(send, f"id: {self.after}\n\n")
        while True:
            events = await loop.run_in_executor(
                self.reader, read_org_batch, self.db, self.org_id, self.after
            )
            for event in events:
                await _body(send, format_event(event))
                self.after = event.seq
            now = loop.time()
            if events:
                last_out = now
            if len(events) >= 500:
                continue
            if now - started >= self.max_s:
                return
            if now - last_out >= self.heartbeat_s:
                await _body(send, ": keepalive\n\n")
                last_out = now
            await asyncio.sleep(max(0.0, min(FEED_POLL_S, self.heartbeat_s - (now - last_out))))


async def serve(
    follow: Callable[[Send], Coroutine[Any, Any, None]], send: Send, receive: Receive
) -> None:
    """Run ``follow`` until it ends or the client leaves; close the body if it ended."""
    gone = asyncio.get_running_loop().create_task(_departure(receive))
    following = asyncio.get_running_loop().create_task(follow(send))
    try:
        await asyncio.wait({gone, following}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (gone, following):
            task.cancel()
        for task in (gone, following):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if following.done() and not following.cancelled() and following.exception() is None:
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def format_event(event: StoredEvent) -> str:
    data = json.dumps(event.data, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n"


async def _body(send: Send, text: str) -> None:
    await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


async def _departure(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def refuse(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    """A problem answer (RFC 9457) from the event loop."""
    body = json.dumps(
        {
            "type": PROBLEM_TYPE + SLUGS.get(status, "error"),
            "title": "Too Many Requests" if status == 429 else "Service Unavailable",
            "status": status,
            "detail": detail,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_S).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
