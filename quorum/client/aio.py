"""The asyncio client: the same API as :class:`quorum.client.Client`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx

import quorum.client._common as c
import quorum.client.calls as calls
from quorum.client.core import Call, Follow, Retries, Watch
from quorum.client.errors import QuorumError, Unauthorized, WaitTimeout
from quorum.client.models import BlockExecution, Comment, Event, Page, Run, Step, Version, Workflow

AsyncEventCallback = Callable[[Event], Awaitable[None] | None]
T = TypeVar("T")


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

    async def call(self, call: Call[T]) -> T:
        """Send ``call`` (retrying as :class:`quorum.client.sync.Client` says) and return its
        parsed answer."""
        retries = Retries.of(self, call.method)
        request = call.request()
        while True:
            try:
                response = await self._http.request(**request)
            except httpx.TransportError as exc:
                await asyncio.sleep(retries.after_transport_error(exc))
                continue
            delay = retries.after_response(response)
            if delay is None:
                return call.parse(c.decode(response))
            await asyncio.sleep(delay)

    async def request(
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
        return await self.call(call)

    async def stream_events(
        self, run_id: str, *, after: int | None = None, reconnect: bool = True
    ) -> AsyncGenerator[Event, None]:
        """A run's events after ``after`` until the one with a terminal run status."""
        follow = Follow.of(self, run_id, after=after, reconnect=reconnect)
        while True:
            try:
                async with self._http.stream(**follow.connect(time.monotonic())) as response:
                    if follow.is_refused(response):
                        await response.aread()
                        await asyncio.sleep(follow.refused(response))
                        continue
                    async for line in response.aiter_lines():
                        event = follow.feed(line)
                        if event is not None:
                            yield event
                            if event.is_terminal:
                                return
            except httpx.TransportError as exc:
                await asyncio.sleep(follow.broken(exc, time.monotonic()))
                continue
            # The server ends a stream after a terminal run's replay, or at its time limit.
            if not reconnect or (await self.runs.get(run_id)).is_terminal:
                return
            if pause := follow.pause_after_end():
                await asyncio.sleep(pause)


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
        call = calls.create_workflow(name, blocks, edges, description, settings, idempotency_key)
        return await self._c.call(call)

    async def list(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        before: str | None = None,
        order: str | None = None,
    ) -> Page[Workflow]:
        return await self._c.call(calls.list_workflows(limit, after, before, order))

    async def get(self, workflow_id: str) -> Workflow:
        return await self._c.call(calls.get_workflow(workflow_id))

    async def replace_draft(
        self,
        workflow_id: str,
        blocks: Iterable[Mapping[str, Any]],
        edges: Iterable[Mapping[str, Any]] = (),
        *,
        settings: Mapping[str, Any] | None = None,
    ) -> Workflow:
        return await self._c.call(calls.replace_draft(workflow_id, blocks, edges, settings))

    async def patch_block(
        self,
        workflow_id: str,
        block_id: str,
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Workflow:
        return await self._c.call(calls.patch_block(workflow_id, block_id, name, config))

    async def publish(self, workflow_id: str, *, name: str | None = None) -> Version:
        return await self._c.call(calls.publish(workflow_id, name))

    async def get_version(self, workflow_id: str, number: int) -> Version:
        return await self._c.call(calls.get_version(workflow_id, number))


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
        call = calls.create_run(workflow_id, inputs, version, metadata, initiator, idempotency_key)
        return await self._c.call(call)

    async def get(self, run_id: str) -> Run:
        return await self._c.call(calls.get_run(run_id))

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
        return await self._c.call(
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

    async def steps(self, run_id: str, *, page_size: int = 200) -> AsyncIterator[Step]:
        after: str | None = None
        while True:
            page = await self._c.call(calls.steps_page(run_id, page_size, after))
            for step in page.data:
                yield step
            if not page.has_more or not page.next_after:
                return
            after = page.next_after

    async def pause(self, run_id: str) -> Run:
        return await self._c.call(calls.control_run(run_id, "pause"))

    async def resume(self, run_id: str) -> Run:
        return await self._c.call(calls.control_run(run_id, "resume"))

    async def cancel(self, run_id: str) -> Run:
        return await self._c.call(calls.control_run(run_id, "cancel"))

    async def input(self, run_id: str, value: Any) -> Run:
        return await self._c.call(calls.answer_input(run_id, value))

    async def comment(self, run_id: str, text: str, *, author: str | None = None) -> Comment:
        return await self._c.call(calls.comment(run_id, text, author))

    async def checkpoint(
        self, run_id: str, resume_turn_index: int, *, input: Any = c.MISSING
    ) -> Run:
        return await self._c.call(calls.checkpoint(run_id, resume_turn_index, input))

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
        watch = Watch.of(run_id, until, timeout, now=None)
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(watch, on_event, poll_interval)
        except TimeoutError:
            raise watch.timed_out((await self.get(run_id)).status) from None

    async def _follow(
        self, watch: Watch, on_event: AsyncEventCallback | None, interval: float
    ) -> Run:
        run = await self.get(watch.run_id)
        if watch.reached(run):
            return run
        try:
            stream = self._c.stream_events(watch.run_id)
            try:
                async for event in stream:
                    await _call(on_event, event)
                    if watch.reached(event) and watch.reached(run := await self.get(watch.run_id)):
                        return run
            finally:
                await stream.aclose()
            if watch.reached(run := await self.get(watch.run_id)):
                return run
        except Unauthorized:
            raise
        except QuorumError:
            pass  # no usable stream: poll
        while True:
            run = await self.get(watch.run_id)
            if (change := watch.polled(run)) is not None:
                await _call(on_event, change)
            if watch.reached(run):
                return run
            await asyncio.sleep(watch.poll_wait(run, interval, time.monotonic()))


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
        return await self._c.call(
            calls.create_execution(
                run_id, block_id, step_id, n_consensus, check_eligibility, idempotency_key
            )
        )

    async def get(self, execution_id: str) -> BlockExecution:
        return await self._c.call(calls.get_execution(execution_id))

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
        call = calls.list_executions(run_id, block_id, limit, after, before, order)
        return await self._c.call(call)

    async def cancel(self, execution_id: str) -> BlockExecution:
        return await self._c.call(calls.cancel_execution(execution_id))

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
