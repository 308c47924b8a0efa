"""The transport-neutral core both clients drive: what to send, and what to do next.

A request (:class:`Call`) is a value: method, path, body, query and how to read the answer.
Retrying it (:class:`Retries`) and following a run's event stream across reconnections
(:class:`Follow`) are decisions taken on what came back, with no I/O here: each returns
the seconds to wait, or raises. The sync client sleeps with ``time.sleep`` and reads with
``httpx.Client``, the async one awaits ``asyncio.sleep`` and ``httpx.AsyncClient``; the
policy is written once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import httpx

from quorum.client._common import (
    IDEMPOTENCY_HEADER,
    MISSING,
    STREAM_READ_TIMEOUT_S,
    TERMINAL,
    backoff,
    is_event_stream,
    new_idempotency_key,
    polled_event,
    retry_delay,
    should_retry,
    stream_headers,
    to_event,
)
from quorum.client.errors import (
    ConnectionFailed,
    QuorumError,
    WaitTimeout,
    error_from_response,
)
from quorum.client.models import Event
from quorum.client.sse import SSEDecoder

T = TypeVar("T")


class Settings(Protocol):
    """What the policies read off a client, at each use (a client's settings may change)."""

    base_url: str
    timeout: float
    retries: int
    max_retry_wait: float


def _as_is(data: Any) -> Any:
    return data


@dataclass(frozen=True, kw_only=True)
class Call(Generic[T]):
    """One API request; ``parse`` turns the decoded JSON answer into its model."""

    method: str
    path: str
    json: Any = MISSING
    params: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    parse: Callable[[Any], T] = _as_is

    def request(self) -> dict[str, Any]:
        """The arguments of ``httpx.Client.request``: the same for every retry, so a POST
        carries one ``Idempotency-Key`` however often it is sent."""
        headers = {}
        if self.method == "POST":
            headers[IDEMPOTENCY_HEADER] = self.idempotency_key or new_idempotency_key()
        return {
            "method": self.method,
            "url": self.path,
            "json": None if self.json is MISSING else self.json,
            "params": self.params,
            "headers": headers,
        }


@dataclass(kw_only=True)
class Retries:
    """The retry policy of one request: 503 and 429 (honouring ``Retry-After`` up to
    ``max_wait``), a 409 of a retried POST whose first attempt still holds its key, and
    connection failures, at most ``limit`` times."""

    method: str
    limit: int
    max_wait: float
    base_url: str
    attempt: int = 0

    @classmethod
    def of(cls, client: Settings, method: str) -> Retries:
        return cls(
            method=method,
            limit=client.retries,
            max_wait=client.max_retry_wait,
            base_url=client.base_url,
        )

    def after_transport_error(self, exc: httpx.TransportError) -> float:
        """Seconds to wait before trying again; :class:`ConnectionFailed` when out of tries."""
        if self.attempt >= self.limit:
            raise ConnectionFailed(f"cannot reach {self.base_url}: {exc}") from exc
        delay = backoff(self.attempt)
        self.attempt += 1
        return delay

    def after_response(self, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again, or None: ``response`` is the answer."""
        if self.attempt < self.limit and should_retry(response, self.method, self.attempt):
            delay = retry_delay(response, self.attempt, self.max_wait)
            if delay is not None:
                self.attempt += 1
                return delay
        return None


@dataclass(kw_only=True)
class Follow:
    """A run's event stream across reconnections, resumed from the last ``seq`` seen.

    ``deadline`` (``time.monotonic()``) raises :class:`WaitTimeout` when it passes; the
    async client leaves it None and bounds the whole wait with ``asyncio.timeout``.
    """

    run_id: str
    after: int | None
    reconnect: bool
    retries: int
    max_wait: float
    timeout: float
    deadline: float | None = None
    failures: int = 0
    got_any: bool = False
    read_s: float = STREAM_READ_TIMEOUT_S
    _decoder: SSEDecoder = field(default_factory=SSEDecoder)

    @classmethod
    def of(
        cls,
        client: Settings,
        run_id: str,
        *,
        after: int | None,
        reconnect: bool,
        deadline: float | None = None,
    ) -> Follow:
        return cls(
            run_id=run_id,
            after=after,
            reconnect=reconnect,
            retries=client.retries,
            max_wait=client.max_retry_wait,
            timeout=client.timeout,
            deadline=deadline,
        )

    @property
    def path(self) -> str:
        return f"/v1/workflows/runs/{self.run_id}/events"

    def connect(self, now: float) -> dict[str, Any]:
        """The arguments of ``httpx.Client.stream`` for the next connection."""
        self.read_s = STREAM_READ_TIMEOUT_S
        if self.deadline is not None:
            self.read_s = min(self.read_s, self.deadline - now)
            if self.read_s <= 0:
                raise WaitTimeout(f"run {self.run_id}: no terminal event before the deadline")
        self.got_any = False
        self._decoder = SSEDecoder()
        return {
            "method": "GET",
            "url": self.path,
            "headers": stream_headers(self.after),
            "timeout": httpx.Timeout(self.timeout, read=self.read_s),
        }

    @staticmethod
    def is_refused(response: httpx.Response) -> bool:
        return response.status_code >= 400 or not is_event_stream(response)

    def refused(self, response: httpx.Response) -> float:
        """A (read) answer that is no event stream: seconds to wait before trying again, or
        the problem it carries raised."""
        retry = should_retry(response, "GET", 0) and self.failures < self.retries
        delay = retry_delay(response, self.failures, self.max_wait) if retry else None
        if delay is not None:
            self.failures += 1
            return delay
        if response.status_code >= 400:
            raise error_from_response(response)
        raise QuorumError(
            "the server did not answer with an event stream",
            status=response.status_code,
            title="Not an event stream",
        )

    def feed(self, line: str) -> Event | None:
        """The event a line completes, if any; the stream resumes after it from now on."""
        sse = self._decoder.feed(line)
        event = to_event(sse) if sse is not None else None
        if event is not None:
            self.failures, self.got_any, self.after = 0, True, event.seq
        return event

    def out_of_time(self, now: float) -> bool:
        """True when the connection should be dropped to reconnect with a read timeout that
        ends at the deadline; :class:`WaitTimeout` once the deadline passed."""
        if self.deadline is None:
            return False
        left = self.deadline - now
        if left <= 0:
            raise WaitTimeout(f"run {self.run_id}: still going at the deadline")
        return left < self.read_s - 1

    def broken(self, exc: httpx.TransportError, now: float) -> float:
        """Seconds to wait before reconnecting a broken stream, or raise."""
        if self.deadline is not None and now >= self.deadline:
            raise WaitTimeout(f"run {self.run_id}: still going at the deadline") from exc
        if not self.reconnect or self.failures >= self.retries:
            raise ConnectionFailed(f"event stream of run {self.run_id} broke: {exc}") from exc
        delay = backoff(self.failures)
        self.failures += 1
        return delay

    def pause_after_end(self) -> float:
        """Seconds to wait before reconnecting a stream the server ended: none when it
        brought events, else a short backoff so an idle stream is not hammered."""
        return 0.0 if self.got_any else backoff(0)


@dataclass(kw_only=True)
class Watch:
    """Waiting for a run to reach a terminal status (or one of ``until``): by its events,
    else by polling it. ``now`` (``time.monotonic()``) sets a deadline ``timeout`` away; the
    async client passes None and bounds the wait with ``asyncio.timeout`` instead."""

    run_id: str
    statuses: frozenset[str]
    timeout: float | None
    deadline: float | None
    _seen: tuple[Any, ...] = ()

    @classmethod
    def of(
        cls, run_id: str, until: Iterable[str] | None, timeout: float | None, now: float | None
    ) -> Watch:
        deadline = None if timeout is None or now is None else now + timeout
        statuses = frozenset(until or ()) | TERMINAL
        return cls(run_id=run_id, statuses=statuses, timeout=timeout, deadline=deadline)

    def reached(self, run_or_event: Any) -> bool:
        """A run's status is one waited for; for an event, only maybe (it may be a replay)."""
        return run_or_event.status in self.statuses

    def timed_out(self, status: str) -> WaitTimeout:
        return WaitTimeout(f"run {self.run_id} still {status} after {self.timeout} s")

    def polled(self, run: Any) -> Event | None:
        """A ``run`` event (``seq`` 0) when the polled run changed since the last poll."""
        state = (run.status, run.progress.steps_done, run.progress.steps_total)
        changed, self._seen = state != self._seen, state
        return polled_event(run) if changed else None

    def poll_wait(self, run: Any, interval: float, now: float) -> float:
        """Seconds until the next poll; :class:`WaitTimeout` once the deadline passed."""
        if self.deadline is None:
            return interval
        if now >= self.deadline:
            raise self.timed_out(run.status)
        return max(0.0, min(interval, self.deadline - now))
