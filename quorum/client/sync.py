"""The synchronous client: ``Client(base_url, api_key)`` with ``workflows``, ``runs`` and
``block_executions``."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx

import quorum.client._common as c
import quorum.client.calls as calls
from quorum.client.core import Call, Follow, Retries, Watch
from quorum.client.errors import QuorumError, Unauthorized, WaitTimeout
from quorum.client.models import BlockExecution, Comment, Event, Page, Run, Step, Version, Workflow

EventCallback = Callable[[Event], None]
T = TypeVar("T")


class Client:
    """A Quorum API client for one API key.

    ``base_url`` defaults to ``$QUORUM_URL`` (else ``http://127.0.0.1:8000``), ``api_key`` to
    ``$QUORUM_API_KEY``. Answers 503 and 429 (and connection failures) are retried up to
    ``retries`` times, honouring ``Retry-After`` up to ``max_retry_wait`` seconds; every POST
    carries a generated ``Idempotency-Key``, so a retried POST never does the work twice.
    Use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_retry_wait: float = 60.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = c.base_url(base_url)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.max_retry_wait = max_retry_wait
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=c.default_headers(c.api_key(api_key), headers),
            timeout=timeout,
            transport=transport,
        )
        self.workflows = Workflows(self)
        self.runs = Runs(self)
        self.block_executions = BlockExecutions(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call[T]) -> T:
        """Send ``call`` (retrying as the class says) and return its parsed answer."""
        retries = Retries.of(self, call.method)
        request = call.request()
        while True:
            try:
                response = self._http.request(**request)
            except httpx.TransportError as exc:
                time.sleep(retries.after_transport_error(exc))
                continue
            delay = retries.after_response(response)
            if delay is None:
                return call.parse(c.decode(response))
            time.sleep(delay)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = c.MISSING,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send one request (with the retries) and return the decoded JSON answer."""
        call: Call[Any] = Call(
            method=method, path=path, json=json, params=params, idempotency_key=idempotency_key
        )
        return self.call(call)

    def stream_events(
        self,
        run_id: str,
        *,
        after: int | None = None,
        reconnect: bool = True,
        deadline: float | None = None,
    ) -> Iterator[Event]:
        """A run's events after ``after``, until the one with a terminal run status.

        With ``reconnect`` a broken or ended stream is resumed from the last ``seq`` seen.
        ``deadline`` (``time.monotonic()``) raises :class:`WaitTimeout` when it passes.
        """
        follow = Follow.of(self, run_id, after=after, reconnect=reconnect, deadline=deadline)
        while True:
            try:
                with self._http.stream(**follow.connect(time.monotonic())) as response:
                    if follow.is_refused(response):
                        response.read()
                        time.sleep(follow.refused(response))
                        continue
                    ended = yield from self._events(response, follow)
            except httpx.TransportError as exc:
                time.sleep(follow.broken(exc, time.monotonic()))
                continue
            if ended is None:
                return  # the terminal event went out
            if not ended:
                continue  # dropped, to reconnect with a read timeout that ends at the deadline
            # The server ends a stream after a terminal run's replay, or at its time limit.
            if not reconnect or self.runs.get(run_id).is_terminal:
                return
            if pause := follow.pause_after_end():
                time.sleep(pause)

    @staticmethod
    def _events(response: httpx.Response, follow: Follow) -> Generator[Event, None, bool | None]:
        """Yield a connection's events; None after the terminal one, else whether the
        server ended the stream (False: dropped to reconnect before the deadline)."""
        for line in response.iter_lines():
            event = follow.feed(line)
            if event is not None:
                yield event
                if event.is_terminal:
                    return None
            if follow.out_of_time(time.monotonic()):
                return False
        return True


class Workflows:
    def __init__(self, client: Client) -> None:
        self._c = client

    def create(
        self,
        name: str,
        blocks: Iterable[Mapping[str, Any]],
        edges: Iterable[Mapping[str, Any]] = (),
        *,
        description: str | None = None,
        settings: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Workflow:
        call = calls.create_workflow(name, blocks, edges, description, settings, idempotency_key)
        return self._c.call(call)

    def list(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        before: str | None = None,
        order: str | None = None,
    ) -> Page[Workflow]:
        return self._c.call(calls.list_workflows(limit, after, before, order))

    def get(self, workflow_id: str) -> Workflow:
        return self._c.call(calls.get_workflow(workflow_id))

    def replace_draft(
        self,
        workflow_id: str,
        blocks: Iterable[Mapping[str, Any]],
        edges: Iterable[Mapping[str, Any]] = (),
        *,
        settings: Mapping[str, Any] | None = None,
    ) -> Workflow:
        return self._c.call(calls.replace_draft(workflow_id, blocks, edges, settings))

    def patch_block(
        self,
        workflow_id: str,
        block_id: str,
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Workflow:
        return self._c.call(calls.patch_block(workflow_id, block_id, name, config))

    def publish(self, workflow_id: str, *, name: str | None = None) -> Version:
        return self._c.call(calls.publish(workflow_id, name))

    def get_version(self, workflow_id: str, number: int) -> Version:
        return self._c.call(calls.get_version(workflow_id, number))


class Runs:
    def __init__(self, client: Client) -> None:
        self._c = client

    def create(
        self,
        workflow_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        version: int | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        initiator: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Start a run (``version``: a number, ``"draft"``, or None for the latest)."""
        call = calls.create_run(workflow_id, inputs, version, metadata, initiator, idempotency_key)
        return self._c.call(call)

    def get(self, run_id: str) -> Run:
        return self._c.call(calls.get_run(run_id))

    def list(
        self,
        *,
        workflow_id: str | None = None,
        status: str | None = None,
        original_run_id: str | None = None,
        created_from: datetime | str | None = None,
        created_to: datetime | str | None = None,
        id_prefix: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        before: str | None = None,
        order: str | None = None,
    ) -> Page[Run]:
        """Newest first; ``created_from`` (inclusive) and ``created_to`` need a time zone."""
        return self._c.call(
            calls.list_runs(
                workflow_id=workflow_id,
                status=status,
                original_run_id=original_run_id,
                created_from=created_from,
                created_to=created_to,
                id_prefix=id_prefix,
                limit=limit,
                after=after,
                before=before,
                order=order,
            )
        )

    def steps(self, run_id: str, *, page_size: int = 200) -> Iterator[Step]:
        """Every step of the run, fetching page after page as the iteration goes."""
        after: str | None = None
        while True:
            page = self._c.call(calls.steps_page(run_id, page_size, after))
            yield from page.data
            if not page.has_more or not page.next_after:
                return
            after = page.next_after

    def pause(self, run_id: str) -> Run:
        return self._c.call(calls.control_run(run_id, "pause"))

    def resume(self, run_id: str) -> Run:
        return self._c.call(calls.control_run(run_id, "resume"))

    def cancel(self, run_id: str) -> Run:
        return self._c.call(calls.control_run(run_id, "cancel"))

    def input(self, run_id: str, value: Any) -> Run:
        """Answer a run waiting for user input; starts its next turn."""
        return self._c.call(calls.answer_input(run_id, value))

    def comment(self, run_id: str, text: str, *, author: str | None = None) -> Comment:
        return self._c.call(calls.comment(run_id, text, author))

    def checkpoint(self, run_id: str, resume_turn_index: int, *, input: Any = c.MISSING) -> Run:
        """Start a new run from turn ``resume_turn_index`` (optionally with another input)."""
        return self._c.call(calls.checkpoint(run_id, resume_turn_index, input))

    def events(
        self, run_id: str, *, after: int | None = None, reconnect: bool = True
    ) -> Iterator[Event]:
        """Follow the run's events (after ``after``, a ``seq``) until its terminal status.

        Resumable: a dropped connection is resumed from the last ``seq`` seen (``reconnect``).
        """
        return self._c.stream_events(run_id, after=after, reconnect=reconnect)

    def wait(
        self,
        run_id: str,
        timeout: float | None = None,
        *,
        until: Iterable[str] | None = None,
        on_event: EventCallback | None = None,
        poll_interval: float = 1.0,
    ) -> Run:
        """Follow the run until it is terminal (or reaches a status in ``until``).

        Uses the event stream, falling back to polling when streaming is not available.
        ``on_event`` sees each event (when polling: a ``run`` event with ``seq`` 0 per change).
        Raises :class:`WaitTimeout` after ``timeout`` seconds.
        """
        watch = Watch.of(run_id, until, timeout, time.monotonic())
        run = self.get(run_id)
        if watch.reached(run):
            return run
        try:
            for event in self._c.stream_events(run_id, deadline=watch.deadline):
                if on_event is not None:
                    on_event(event)
                # A replayed status may be an old one: the run itself says.
                if watch.reached(event) and watch.reached(run := self.get(run_id)):
                    return run
            if watch.reached(run := self.get(run_id)):
                return run
        except WaitTimeout:
            raise watch.timed_out(self.get(run_id).status) from None
        except Unauthorized:
            raise
        except QuorumError:
            pass  # no usable stream (a proxy, an older server): poll
        while True:
            run = self.get(run_id)
            if (change := watch.polled(run)) is not None and on_event is not None:
                on_event(change)
            if watch.reached(run):
                return run
            time.sleep(watch.poll_wait(run, poll_interval, time.monotonic()))


class BlockExecutions:
    def __init__(self, client: Client) -> None:
        self._c = client

    def create(
        self,
        run_id: str,
        block_id: str,
        *,
        step_id: str | None = None,
        n_consensus: int | None = None,
        check_eligibility: bool | None = None,
        idempotency_key: str | None = None,
    ) -> BlockExecution:
        """Re-run one block of the current draft with the inputs a step of the run saw."""
        return self._c.call(
            calls.create_execution(
                run_id, block_id, step_id, n_consensus, check_eligibility, idempotency_key
            )
        )

    def get(self, execution_id: str) -> BlockExecution:
        return self._c.call(calls.get_execution(execution_id))

    def list(
        self,
        *,
        run_id: str | None = None,
        block_id: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        before: str | None = None,
        order: str | None = None,
    ) -> Page[BlockExecution]:
        return self._c.call(calls.list_executions(run_id, block_id, limit, after, before, order))

    def cancel(self, execution_id: str) -> BlockExecution:
        return self._c.call(calls.cancel_execution(execution_id))

    def wait(
        self, execution_id: str, timeout: float | None = None, *, poll_interval: float = 0.5
    ) -> BlockExecution:
        """Poll until the execution's lifecycle is terminal; :class:`WaitTimeout` after
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ex = self.get(execution_id)
            if ex.lifecycle.is_terminal:
                return ex
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"block execution {execution_id} still {ex.status}")
            left = poll_interval if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(poll_interval, left)))
