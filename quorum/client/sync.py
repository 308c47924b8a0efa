"""The synchronous client: ``Client(base_url, api_key)`` with ``workflows``, ``runs`` and
``block_executions``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import httpx

from quorum.client import _common as c
from quorum.client.errors import (
    ConnectionFailed,
    QuorumError,
    Unauthorized,
    WaitTimeout,
    error_from_response,
)
from quorum.client.models import (
    BlockExecution,
    Comment,
    Event,
    Page,
    Run,
    Step,
    Version,
    Workflow,
)
from quorum.client.sse import SSEDecoder

EventCallback = Callable[[Event], None]


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
        headers = {}
        if method == "POST":
            headers[c.IDEMPOTENCY_HEADER] = idempotency_key or c.new_idempotency_key()
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    json=None if json is c.MISSING else json,
                    params=params,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise ConnectionFailed(f"cannot reach {self.base_url}: {exc}") from exc
                time.sleep(c.backoff(attempt))
                attempt += 1
                continue
            if attempt < self.retries and c.should_retry(response, method, attempt):
                delay = c.retry_delay(response, attempt, self.max_retry_wait)
                if delay is not None:
                    time.sleep(delay)
                    attempt += 1
                    continue
            return c.decode(response)

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
        path = f"/v1/workflows/runs/{run_id}/events"
        failures = 0
        while True:
            read = c.STREAM_READ_TIMEOUT_S
            if deadline is not None:
                read = min(read, deadline - time.monotonic())
                if read <= 0:
                    raise WaitTimeout(f"run {run_id}: no terminal event before the deadline")
            got_any = ended = False
            try:
                with self._http.stream(
                    "GET",
                    path,
                    headers=c.stream_headers(after),
                    timeout=httpx.Timeout(self.timeout, read=read),
                ) as response:
                    if response.status_code >= 400 or not c.is_event_stream(response):
                        response.read()
                        delay = (
                            c.retry_delay(response, failures, self.max_retry_wait)
                            if c.should_retry(response, "GET", 0) and failures < self.retries
                            else None
                        )
                        if delay is not None:
                            failures += 1
                            time.sleep(delay)
                            continue
                        if response.status_code >= 400:
                            raise error_from_response(response)
                        raise QuorumError(
                            "the server did not answer with an event stream",
                            status=response.status_code,
                            title="Not an event stream",
                        )
                    decoder = SSEDecoder()
                    for line in response.iter_lines():
                        sse = decoder.feed(line)
                        event = c.to_event(sse) if sse is not None else None
                        if event is not None:
                            failures, got_any, after = 0, True, event.seq
                            yield event
                            if event.is_terminal:
                                return
                        if deadline is not None:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                raise WaitTimeout(f"run {run_id}: still going at the deadline")
                            if left < read - 1:
                                break  # reconnect with a read timeout that ends at the deadline
                    else:
                        ended = True
            except httpx.TransportError as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"run {run_id}: still going at the deadline") from exc
                if not reconnect or failures >= self.retries:
                    raise ConnectionFailed(f"event stream of run {run_id} broke: {exc}") from exc
                time.sleep(c.backoff(failures))
                failures += 1
                continue
            if ended:
                # The server ends a stream after a terminal run's replay, or at its time limit.
                if not reconnect or self.runs.get(run_id).is_terminal:
                    return
                if not got_any:
                    time.sleep(c.backoff(0))


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
        body = c.workflow_body(name, blocks, edges, description, settings)
        data = self._c.request("POST", "/v1/workflows", json=body, idempotency_key=idempotency_key)
        return Workflow.parse(data)

    def list(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        before: str | None = None,
        order: str | None = None,
    ) -> Page[Workflow]:
        query = c.page_params(limit, after, before, order)
        data = self._c.request("GET", "/v1/workflows", params=query)
        return c.page(Workflow, data)

    def get(self, workflow_id: str) -> Workflow:
        return Workflow.parse(self._c.request("GET", f"/v1/workflows/{workflow_id}"))

    def replace_draft(
        self,
        workflow_id: str,
        blocks: Iterable[Mapping[str, Any]],
        edges: Iterable[Mapping[str, Any]] = (),
        *,
        settings: Mapping[str, Any] | None = None,
    ) -> Workflow:
        body = c.workflow_body(None, blocks, edges, None, settings)
        return Workflow.parse(
            self._c.request("PUT", f"/v1/workflows/{workflow_id}/draft", json=body)
        )

    def patch_block(
        self,
        workflow_id: str,
        block_id: str,
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Workflow:
        body = c.params(name=name, config=dict(config) if config is not None else None)
        path = f"/v1/workflows/{workflow_id}/draft/blocks/{block_id}"
        return Workflow.parse(self._c.request("PATCH", path, json=body))

    def publish(self, workflow_id: str, *, name: str | None = None) -> Version:
        body = c.params(name=name)
        return Version.parse(
            self._c.request("POST", f"/v1/workflows/{workflow_id}/versions", json=body)
        )

    def get_version(self, workflow_id: str, number: int) -> Version:
        return Version.parse(
            self._c.request("GET", f"/v1/workflows/{workflow_id}/versions/{number}")
        )


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
        body = c.run_body(workflow_id, inputs, version, metadata, initiator)
        data = self._c.request(
            "POST", "/v1/workflows/runs", json=body, idempotency_key=idempotency_key
        )
        return Run.parse(data)

    def get(self, run_id: str) -> Run:
        return Run.parse(self._c.request("GET", f"/v1/workflows/runs/{run_id}"))

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
        query = c.params(
            workflow_id=workflow_id,
            status=status,
            original_run_id=original_run_id,
            created_from=created_from,
            created_to=created_to,
            id_prefix=id_prefix,
        ) | c.page_params(limit, after, before, order)
        return c.page(Run, self._c.request("GET", "/v1/workflows/runs", params=query))

    def steps(self, run_id: str, *, page_size: int = 200) -> Iterator[Step]:
        """Every step of the run, fetching page after page as the iteration goes."""
        after: str | None = None
        while True:
            query = c.params(limit=page_size, after=after)
            page = c.page(
                Step, self._c.request("GET", f"/v1/workflows/runs/{run_id}/steps", params=query)
            )
            yield from page.data
            if not page.has_more or not page.next_after:
                return
            after = page.next_after

    def pause(self, run_id: str) -> Run:
        return Run.parse(self._c.request("POST", f"/v1/workflows/runs/{run_id}/pause"))

    def resume(self, run_id: str) -> Run:
        return Run.parse(self._c.request("POST", f"/v1/workflows/runs/{run_id}/resume"))

    def cancel(self, run_id: str) -> Run:
        return Run.parse(self._c.request("POST", f"/v1/workflows/runs/{run_id}/cancel"))

    def input(self, run_id: str, value: Any) -> Run:
        """Answer a run waiting for user input; starts its next turn."""
        path = f"/v1/workflows/runs/{run_id}/input"
        return Run.parse(self._c.request("POST", path, json={"input": value}))

    def comment(self, run_id: str, text: str, *, author: str | None = None) -> Comment:
        body = c.params(text=text, author=author)
        path = f"/v1/workflows/runs/{run_id}/comments"
        return Comment.parse(self._c.request("POST", path, json=body))

    def checkpoint(self, run_id: str, resume_turn_index: int, *, input: Any = c.MISSING) -> Run:
        """Start a new run from turn ``resume_turn_index`` (optionally with another input)."""
        body: dict[str, Any] = {"resume_turn_index": resume_turn_index}
        if input is not c.MISSING:
            body["input"] = input
        path = f"/v1/workflows/runs/{run_id}/checkpoint"
        return Run.parse(self._c.request("POST", path, json=body))

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
        statuses = frozenset(until or ()) | c.TERMINAL
        deadline = None if timeout is None else time.monotonic() + timeout
        run = self.get(run_id)
        if run.status in statuses:
            return run
        try:
            for event in self._c.stream_events(run_id, deadline=deadline):
                if on_event is not None:
                    on_event(event)
                # A replayed status may be an old one: the run itself says.
                if event.status in statuses and (run := self.get(run_id)).status in statuses:
                    return run
            run = self.get(run_id)
            if run.status in statuses:
                return run
        except WaitTimeout:
            status = self.get(run_id).status
            raise WaitTimeout(f"run {run_id} still {status} after {timeout} s") from None
        except Unauthorized:
            raise
        except QuorumError:
            pass  # no usable stream (a proxy, an older server): poll
        return self._poll(run_id, statuses, deadline, on_event, poll_interval, timeout)

    def _poll(
        self,
        run_id: str,
        statuses: frozenset[str],
        deadline: float | None,
        on_event: EventCallback | None,
        interval: float,
        timeout: float | None,
    ) -> Run:
        seen: tuple[Any, ...] = ()
        while True:
            run = self.get(run_id)
            state = (run.status, run.progress.steps_done, run.progress.steps_total)
            if on_event is not None and state != seen:
                on_event(c.polled_event(run))
            seen = state
            if run.status in statuses:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"run {run_id} still {run.status} after {timeout} s")
            left = None if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(interval, left if left is not None else interval)))


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
        body = c.execution_body(run_id, block_id, step_id, n_consensus, check_eligibility)
        data = self._c.request(
            "POST", "/v1/workflows/blocks/executions", json=body, idempotency_key=idempotency_key
        )
        return BlockExecution.parse(data)

    def get(self, execution_id: str) -> BlockExecution:
        path = f"/v1/workflows/blocks/executions/{execution_id}"
        return BlockExecution.parse(self._c.request("GET", path))

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
        query = c.params(run_id=run_id, block_id=block_id) | c.page_params(
            limit, after, before, order
        )
        data = self._c.request("GET", "/v1/workflows/blocks/executions", params=query)
        return c.page(BlockExecution, data)

    def cancel(self, execution_id: str) -> BlockExecution:
        path = f"/v1/workflows/blocks/executions/{execution_id}/cancel"
        return BlockExecution.parse(self._c.request("POST", path))

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
