"""Problem answers (RFC 9457) as typed exceptions."""

from __future__ import annotations

import json
from typing import Any

import httpx


class QuorumError(Exception):
    """An error answer of the Quorum API, or a failure to get one.

    ``status`` is the HTTP status (``None`` when no answer came), ``title`` and ``detail`` the
    problem's, ``errors`` the validation errors (``[{"loc": [...], "msg": ...}]``) and
    ``problem`` the problem object as received.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str = "",
        errors: list[dict[str, Any]] | None = None,
        problem: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.problem = problem or {}
        self.headers = headers or httpx.Headers()

    def __str__(self) -> str:
        head = " ".join(str(p) for p in (self.status, self.title) if p)
        text = f"{head} — {self.detail}" if head else self.detail
        shown = [_error_text(e) for e in self.errors[:3]]
        if shown:
            more = f" (+{len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
            text += " [" + "; ".join(shown) + more + "]"
        return text


def _error_text(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    loc = ".".join(str(p) for p in error.get("loc") or [])
    return f"{loc}: {error.get('msg', '')}" if loc else str(error.get("msg", ""))


class BadRequest(QuorumError):
    """400: the body is not parsable JSON."""


class Unauthorized(QuorumError):
    """401: missing, unknown or revoked API key."""


class NotFound(QuorumError):
    """404: no such object (or another organization's)."""


class Conflict(QuorumError):
    """409: the object's state does not allow this, or upstream drift (``drift``)."""

    @property
    def drift(self) -> dict[str, Any] | None:
        value = self.problem.get("drift")
        return value if isinstance(value, dict) else None


class PayloadTooLarge(QuorumError):
    """413: the body exceeds the server's limit."""


class UnsupportedMediaType(QuorumError):
    """415: the body is not sent as JSON."""


class ValidationFailed(QuorumError):
    """422: well-formed but invalid; ``available_iterations`` lists the steps to choose
    from (``{"step_id", "iteration"}``) when relevant."""

    @property
    def available_iterations(self) -> list[dict[str, Any]] | None:
        value = self.problem.get("available_iterations")
        return list(value) if isinstance(value, list) else None


class RateLimited(QuorumError):
    """429: too many requests for this key; ``retry_after`` in seconds."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


class ServiceUnavailable(QuorumError):
    """503: a dependency of the server (database, broker) is down."""


class ConnectionFailed(QuorumError):
    """The server could not be reached (or the connection broke), after the retries."""


class WaitTimeout(QuorumError, TimeoutError):
    """``wait()`` gave up before the object reached the status waited for."""


BY_STATUS: dict[int, type[QuorumError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: httpx.Response) -> QuorumError:
    """The typed exception for an error answer (the body must have been read)."""
    status = response.status_code
    problem: dict[str, Any] = {}
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        body = None
    if isinstance(body, dict):
        problem = body
    title = str(problem.get("title") or response.reason_phrase or "Error")
    detail = problem.get("detail")
    if not isinstance(detail, str) or not detail:
        text = response.text.strip()
        detail = text[:300] if text and not problem else title
    errors = problem.get("errors")
    cls = BY_STATUS.get(status, QuorumError)
    return cls(
        detail,
        status=status,
        title=title,
        errors=[e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else [],
        problem=problem,
        headers=response.headers,
    )
