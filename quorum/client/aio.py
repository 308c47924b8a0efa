"""The asyncio client: the same API as :class:`quorum.client.Client`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
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

AsyncEventCallback = Callable[[Event], Awaitable[None] | None]


class AsyncClient:
    """The asyncio twin of :class:`quorum.client.Client` (same arguments, same retries)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_retry_wait: float = 60.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = c.base_url(base_url)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.max_retry_wait = max_retry_wait
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=c.default_headers(c.api_key(api_key), headers),
            timeout=timeout,
            transport=transport,
        )
        self.workflows = AsyncWorkflows(self)
        self.runs = AsyncRuns(self)
        self.block_executions = AsyncBlockExecutions(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = c.MISSING,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        headers = {}
        if method == "POST":
            headers[c.IDEMPOTENCY_HEADER] = idempotency_key or c.new_idempotency_key()
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method,
                    path,
                    json=None if json is c.MISSING else json,
                    params=params,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise ConnectionFailed(f"cannot reach {self.base_url}: {exc}") from exc
                await asyncio.sleep(c.backoff(attempt))
                attempt += 1
                continue
            if attempt < self.retries and c.should_retry(response, method, attempt):
                delay = c.retry_delay(response, attempt, self.max_retry_wait)
                if delay is not None:
                    await asyncio.sleep(delay)
                    attempt += 1
                    continue
            return c.decode(response)

    async def stream_events(
        self, run_id: str, *, after: int | None = None, reconnect: bool = True
    ) -> AsyncGenerator[Event, None]:
        """A run's events after ``after`` until the one with a terminal run status."""
        path = f"/v1/workflows/runs/{run_id}/events"
        failures = 0
        while True:
            got_any = ended = False
            try:
                async with self._http.stream(
                    "GET",
                    path,
                    headers=c.stream_headers(after),
                    timeout=httpx.Timeout(self.timeout, read=c.STREAM_READ_TIMEOUT_S),
                ) as response:
                    if response.status_code >= 400 or not c.is_event_stream(response):
                        await response.aread()
                        delay = (
                            c.retry_delay(response, failures, self.max_retry_wait)
                            if c.should_retry(response, "GET", 0) and failures < self.retries
                            else None
                        )
                        if delay is not None:
                            failures += 1
                            await asyncio.sleep(delay)
                            continue
                        if response.status_code >= 400:
                            raise error_from_response(response)
                        raise QuorumError(
                            "the server did not answer with an event stream",
                            status=response.status_code,
                            title="Not an event stream",
                        )
                    decoder = SSEDecoder()
                    async for line in response.aiter_lines():
                        sse = decoder.feed(line)
                        event = c.to_event(sse) if sse is not None else None
                        if event is not None:
                            failures, got_any, after = 0, True, event.seq
                            yield event
                            if event.is_terminal:
                                return
                    ended = True
            except httpx.TransportError as exc:
                if not reconnect or failures >= self.retries:
                    raise ConnectionFailed(f"event stream of run {run_id} broke: {exc}") from exc
                await asyncio.sleep(c.backoff(failures))
                failures += 1
                continue
            if ended:
                if not reconnect or (await self.runs.get(run_id)).is_terminal:
                    return
                if not got_any:
                    await asyncio.sleep(c.backoff(0))


class AsyncWorkflows:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def create(
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
        data = await self._c.request(
            "POST", "/v1/workflows", json=body, idempotency_key=idempotency_key
        )
        return Workflow.parse(data)

    async def list(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        before: str | None = None,
        order: str | None = None,
    ) -> Page[Workflow]:
        query = c.page_params(limit, after, before, order)
        return c.page(Workflow, await self._c.request("GET", "/v1/workflows", params=query))

    async def get(self, workflow_id: str) -> Workflow:
        return Workflow.parse(await self._c.request("GET", f"/v1/workflows/{workflow_id}"))

    async def replace_draft(
        self,
        workflow_id: str,
        blocks: Iterable[Mapping[str, Any]],
        edges: Iterable[Mapping[str, Any]] = (),
        *,
        settings: Mapping[str, Any] | None = None,
    ) -> Workflow:
        body = c.workflow_body(None, blocks, edges, None, settings)
        path = f"/v1/workflows/{workflow_id}/draft"
        return Workflow.parse(await self._c.request("PUT", path, json=body))

    async def patch_block(
        self,
        workflow_id: str,
        block_id: str,
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Workflow:
        body = c.params(name=name, config=dict(config) if config is not None else None)
        path = f"/v1/workflows/{workflow_id}/draft/blocks/{block_id}"
        return Workflow.parse(await self._c.request("PATCH", path, json=body))

    async def publish(self, workflow_id: str, *, name: str | None = None) -> Version:
        path = f"/v1/workflows/{workflow_id}/versions"
        return Version.parse(await self._c.request("POST", path, json=c.params(name=name)))

    async def get_version(self, workflow_id: str, number: int) -> Version:
        path = f"/v1/workflows/{workflow_id}/versions/{number}"
        return Version.parse(await self._c.request("GET", path))


class AsyncRuns:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def create(
        self,
        workflow_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        version: int | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        initiator: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        body = c.run_body(workflow_id, inputs, version, metadata, initiator)
        data = await self._c.request(
            "POST", "/v1/workflows/runs", json=body, idempotency_key=idempotency_key
        )
        return Run.parse(data)

    async def get(self, run_id: str) -> Run:
        return Run.parse(await self._c.request("GET", f"/v1/workflows/runs/{run_id}"))

    async def list(
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
        return c.page(Run, await self._c.request("GET", "/v1/workflows/runs", params=query))

    async def steps(self, run_id: str, *, page_size: int = 200) -> AsyncIterator[Step]:
        after: str | None = None
        while True:
            query = c.params(limit=page_size, after=after)
            data = await self._c.request("GET", f"/v1/workflows/runs/{run_id}/steps", params=query)
            page: Page[Step] = c.page(Step, data)
            for step in page.data:
                yield step
            if not page.has_more or not page.next_after:
                return
            after = page.next_after

    async def pause(self, run_id: str) -> Run:
        return Run.parse(await self._c.request("POST", f"/v1/workflows/runs/{run_id}/pause"))

    async def resume(self, run_id: str) -> Run:
        return Run.parse(await self._c.request("POST", f"/v1/workflows/runs/{run_id}/resume"))

    async def cancel(self, run_id: str) -> Run:
        return Run.parse(await self._c.request("POST", f"/v1/workflows/runs/{run_id}/cancel"))

    async def input(self, run_id: str, value: Any) -> Run:
        path = f"/v1/workflows/runs/{run_id}/input"
        return Run.parse(await self._c.request("POST", path, json={"input": value}))

    async def comment(self, run_id: str, text: str, *, author: str | None = None) -> Comment:
        path = f"/v1/workflows/runs/{run_id}/comments"
        return Comment.parse(
            await self._c.request("POST", path, json=c.params(text=text, author=author))
        )

    async def checkpoint(
        self, run_id: str, resume_turn_index: int, *, input: Any = c.MISSING
    ) -> Run:
        body: dict[str, Any] = {"resume_turn_index": resume_turn_index}
        if input is not c.MISSING:
            body["input"] = input
        path = f"/v1/workflows/runs/{run_id}/checkpoint"
        return Run.parse(await self._c.request("POST", path, json=body))

    def events(
        self, run_id: str, *, after: int | None = None, reconnect: bool = True
    ) -> AsyncIterator[Event]:
        """Follow the run's events until its terminal status (resumable, see ``Client``)."""
        return self._c.stream_events(run_id, after=after, reconnect=reconnect)

    async def wait(
        self,
        run_id: str,
        timeout: float | None = None,
        *,
        until: Iterable[str] | None = None,
        on_event: AsyncEventCallback | None = None,
        poll_interval: float = 1.0,
    ) -> Run:
        """Follow the run until it is terminal (or reaches a status in ``until``); see
        :meth:`quorum.client.sync.Runs.wait`."""
        statuses = frozenset(until or ()) | c.TERMINAL
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(run_id, statuses, on_event, poll_interval)
        except TimeoutError:
            status = (await self.get(run_id)).status
            raise WaitTimeout(f"run {run_id} still {status} after {timeout} s") from None

    async def _follow(
        self,
        run_id: str,
        statuses: frozenset[str],
        on_event: AsyncEventCallback | None,
        interval: float,
    ) -> Run:
        run = await self.get(run_id)
        if run.status in statuses:
            return run
        try:
            stream = self._c.stream_events(run_id)
            try:
                async for event in stream:
                    await _call(on_event, event)
                    if event.status in statuses and (run := await self.get(run_id)).status in (
                        statuses
                    ):
                        return run
            finally:
                await stream.aclose()
            run = await self.get(run_id)
            if run.status in statuses:
                return run
        except Unauthorized:
            raise
        except QuorumError:
            pass  # no usable stream: poll
        seen: tuple[Any, ...] = ()
        while True:
            run = await self.get(run_id)
            state = (run.status, run.progress.steps_done, run.progress.steps_total)
            if state != seen:
                await _call(on_event, c.polled_event(run))
            seen = state
            if run.status in statuses:
                return run
            await asyncio.sleep(interval)


class AsyncBlockExecutions:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def create(
        self,
        run_id: str,
        block_id: str,
        *,
        step_id: str | None = None,
        n_consensus: int | None = None,
        check_eligibility: bool | None = None,
        idempotency_key: str | None = None,
    ) -> BlockExecution:
        body = c.execution_body(run_id, block_id, step_id, n_consensus, check_eligibility)
        data = await self._c.request(
            "POST", "/v1/workflows/blocks/executions", json=body, idempotency_key=idempotency_key
        )
        return BlockExecution.parse(data)

    async def get(self, execution_id: str) -> BlockExecution:
        path = f"/v1/workflows/blocks/executions/{execution_id}"
        return BlockExecution.parse(await self._c.request("GET", path))

    async def list(
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
        data = await self._c.request("GET", "/v1/workflows/blocks/executions", params=query)
        return c.page(BlockExecution, data)

    async def cancel(self, execution_id: str) -> BlockExecution:
        path = f"/v1/workflows/blocks/executions/{execution_id}/cancel"
        return BlockExecution.parse(await self._c.request("POST", path))

    async def wait(
        self, execution_id: str, timeout: float | None = None, *, poll_interval: float = 0.5
    ) -> BlockExecution:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    ex = await self.get(execution_id)
                    if ex.lifecycle.is_terminal:
                        return ex
                    await asyncio.sleep(poll_interval)
        except TimeoutError:
            raise WaitTimeout(f"block execution {execution_id} still running") from None


async def _call(callback: AsyncEventCallback | None, event: Event) -> None:
    if callback is not None:
        result = callback(event)
        if result is not None:
            await result
