"""RFC 9457 problem answers for every error; no stack trace ever reaches a client."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from flask import Flask, Response, json
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from engine.errors import FieldError, QuorumError

log = logging.getLogger("quorum.api")

PROBLEM_TYPE = "urn:quorum:problem:"
# One type and one title per status, whichever layer (routing, domain, werkzeug) answers.
SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ApiProblem(Exception):
    """An HTTP-level problem raised by the API layer itself (parsing, auth, limits)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title
        self.errors = list(errors)
        self.headers = headers or {}


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: Sequence[FieldError] = (),
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + SLUGS.get(status, "error"),
        "title": title or _default_title(status),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    for k, v in (extra or {}).items():
        body.setdefault(k, v)  # never overrides the standard members
    resp = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _default_title(status: int) -> str:
    from http import HTTPStatus

    if status in TITLES:
        return TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def validation_errors(exc: ValidationError, prefix: str) -> list[FieldError]:
    return [FieldError(loc=(prefix, *e["loc"]), msg=e["msg"]) for e in exc.errors()]


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiProblem)
    def _api_problem(exc: ApiProblem) -> Response:
        return problem(
            exc.status, exc.detail, title=exc.title, errors=exc.errors, headers=exc.headers
        )

    @app.errorhandler(QuorumError)
    def _domain(exc: QuorumError) -> Response:
        errors = getattr(exc, "errors", [])
        retry_after = getattr(exc, "retry_after_s", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return problem(exc.status, exc.detail, errors=errors, extra=exc.extra, headers=headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        limit = app.config.get("MAX_CONTENT_LENGTH")
        detail = {
            404: "no such resource",
            405: "this method is not allowed on this resource",
            413: f"the request body exceeds the limit of {limit} bytes",
        }.get(status, exc.description or "")
        resp = problem(status, detail)
        if status == 405 and exc.get_response().headers.get("Allow"):
            resp.headers["Allow"] = exc.get_response().headers["Allow"]
        return resp

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def _db_down(exc: Exception) -> Response:
        log.warning("database unavailable: %s", type(exc).__name__)
        return problem(
            503, "the database is unavailable; retry shortly", headers={"Retry-After": "2"}
        )

    @app.errorhandler(DataError)
    def _db_data(exc: DataError) -> Response:
        # A value the database cannot store (out of range, too long) that validation let
        # through: the client's input, so a 422, never a 500. Logged to close the gap.
        log.warning("database refused a value: %s", exc.orig)
        return problem(422, "a value in the request cannot be stored (out of range or too long)")

    @app.errorhandler(DBAPIError)
    def _db_error(exc: DBAPIError) -> Response:
        if exc.connection_invalidated:
            return problem(
                503, "the database connection was lost; retry shortly", headers={"Retry-After": "2"}
            )
        log.exception("database error")
        return problem(500, "an internal error occurred")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem(500, "an internal error occurred")
