"""What the sync and async clients share: settings, retry policy, request bodies."""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from quorum.client.errors import QuorumError, error_from_response, parse_retry_after
from quorum.client.models import TERMINAL_RUN, Event, ListMetadata, Page
from quorum.client.sse import ServerSentEvent

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "QUORUM_URL"
KEY_ENV = "QUORUM_API_KEY"
RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENCY_HEADER = "Idempotency-Key"
HEARTBEAT_S = 15.0  # the server's keepalive interval on event streams
STREAM_READ_TIMEOUT_S = HEARTBEAT_S + 10.0
TERMINAL = TERMINAL_RUN
# Statuses wait() stops at besides the terminal ones when asked (a run needing an answer).
WAITING = "waiting_for_user_input"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def base_url(url: str | None) -> str:
    return (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def api_key(key: str | None) -> str:
    found = key or os.environ.get(KEY_ENV)
    if not found:
        raise ValueError(f"an API key is required: pass api_key= or set {KEY_ENV}")
    return found


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("quorum")
    except PackageNotFoundError:
        return "0"


def default_headers(key: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {key}",
        "User-Agent": f"quorum-client/{_version()}",
        "Accept": "application/json",
        **(extra or {}),
    }


def new_idempotency_key() -> str:
    return f"qc-{uuid.uuid4().hex}"


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter: ~0.25 s, 0.5 s, 1 s... capped at 8 s."""
    return min(8.0, 0.25 * 2**attempt) * (0.5 + random.random() / 2)


def retry_delay(response: httpx.Response | None, attempt: int, max_wait: float) -> float | None:
    """Seconds to wait before the next attempt, or None when waiting is not worth it."""
    if response is not None:
        after = parse_retry_after(response.headers.get("Retry-After"))
        if after is not None:
            return after if after <= max_wait else None
    return backoff(attempt)


def should_retry(response: httpx.Response, method: str, attempt: int) -> bool:
    if response.status_code in RETRY_STATUSES:
        return True
    # A retried POST whose first attempt is still being processed (its key is held).
    return (
        response.status_code == 409
        and method == "POST"
        and attempt > 0
        and IDEMPOTENCY_HEADER in response.text
    )


def decode(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise error_from_response(response)
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise QuorumError(
            "the server answered with something that is not JSON",
            status=response.status_code,
            title="Bad answer",
        ) from None


def params(**values: Any) -> dict[str, Any]:
    """Query or body values that are set; a datetime as RFC 3339 (naive ones are refused)."""
    set_ = {k: v for k, v in values.items() if v is not None}
    return {k: instant(v) if isinstance(v, datetime) else v for k, v in set_.items()}


def instant(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: pass an aware datetime")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def page_params(
    limit: int | None, after: str | None, before: str | None, order: str | None
) -> dict[str, Any]:
    return params(limit=limit, after=after, before=before, order=order)


def workflow_body(
    name: str | None,
    blocks: Iterable[Mapping[str, Any]] | None,
    edges: Iterable[Mapping[str, Any]] | None,
    description: str | None,
    settings: Mapping[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"blocks": list(blocks or []), "edges": list(edges or [])}
    if name is not None:
        body["name"] = name
    if description is not None:
        body["description"] = description
    if settings is not None:
        body["settings"] = dict(settings)
    return body


def run_body(
    workflow_id: str,
    inputs: Mapping[str, Any] | None,
    version: int | str | None,
    metadata: Mapping[str, Any] | None,
    initiator: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"workflow_id": workflow_id, "inputs": dict(inputs or {})}
    if version is not None:
        body["version"] = version
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if initiator is not None:
        body["initiator"] = initiator
    return body


def execution_body(
    run_id: str,
    block_id: str,
    step_id: str | None,
    n_consensus: int | None,
    check_eligibility: bool | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"run_id": run_id, "block_id": block_id}
    if step_id is not None:
        body["step_id"] = step_id
    if n_consensus is not None:
        body["n_consensus"] = n_consensus
    if check_eligibility is not None:
        body["check_eligibility"] = check_eligibility
    return body


def stream_headers(after: int | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if after is not None:
        headers["Last-Event-ID"] = str(after)
    return headers


def is_event_stream(response: httpx.Response) -> bool:
    return response.headers.get("Content-Type", "").startswith("text/event-stream")


def to_event(sse: ServerSentEvent) -> Event | None:
    """The typed event, or None for a message that is not one (no id, not JSON)."""
    if sse.id is None or not sse.id.isdigit():
        return None
    try:
        data = json.loads(sse.data)
    except ValueError:
        return None
    result: Event = Event.parse(
        {"seq": int(sse.id), "kind": sse.event, "data": data if isinstance(data, dict) else {}}
    )
    return result


def polled_event(run: Any) -> Event:
    """A ``run`` event made from a polled run (``seq`` 0: not from the stream)."""
    result: Event = Event.parse(
        {
            "seq": 0,
            "kind": "run",
            "data": {
                "run_id": run.id,
                "status": run.status,
                "termination_reason": run.termination_reason,
                "progress": run.progress.model_dump(),
            },
        }
    )
    return result


def page(model: Any, data: Any) -> Any:
    """A :class:`Page` of ``model`` from a list answer."""
    body = data if isinstance(data, dict) else {}
    return Page[model](
        data=[model.parse(item) for item in body.get("data") or []],
        has_more=bool(body.get("has_more")),
        next_after=body.get("next_after"),
        list_metadata=ListMetadata.model_validate(body.get("list_metadata") or {}),
    )
