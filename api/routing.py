"""A small route registry: each operation declared once, for Flask and for the OpenAPI
document (``api.openapi``).

A registered view gets its path values checked, its body and query parsed into their models
(``api.requests``), and, for an authenticated POST with an ``Idempotency-Key``, the stored
first answer replayed (``api.idempotent``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, request
from pydantic import BaseModel

import engine.idempotency as idempotency
from api.idempotent import keyed_answer
from api.requests import check_path_params, parse_body, parse_query

View = Callable[..., Any]
_PARAM = re.compile(r"<(?:([a-z]+):)?([a-z_]+)>")
JSON = "application/json"


@dataclass(frozen=True, kw_only=True)
class Operation:
    method: str
    rule: str
    endpoint: str
    summary: str
    tag: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    status: int
    auth: bool
    errors: tuple[int, ...]
    idempotent: bool = False
    response: type[BaseModel] | None = None
    content: tuple[str, ...] = (JSON,)

    @property
    def openapi_path(self) -> str:
        return _PARAM.sub(r"{\2}", self.rule)

    @property
    def path_params(self) -> list[str]:
        return [name for _, name in _PARAM.findall(self.rule)]

    @property
    def converters(self) -> dict[str, str]:
        return {name: conv or "string" for conv, name in _PARAM.findall(self.rule)}


@dataclass
class Registry:
    operations: list[Operation] = field(default_factory=list)

    def route(
        self,
        bp: Blueprint,
        method: str,
        rule: str,
        *,
        summary: str,
        tag: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        status: int = 200,
        auth: bool = True,
        errors: tuple[int, ...] = (),
        idempotent: bool = True,
        response: type[BaseModel] | None = None,
        content: tuple[str, ...] = (JSON,),
    ) -> Callable[[View], View]:
        """Register an operation.

        ``response`` documents the success body (the view builds it; see ``api.views``),
        ``content`` the media types it comes in. ``idempotent`` (authenticated POSTs only)
        honours an ``Idempotency-Key`` header: a repeat of a successful POST with the same
        key replays the first answer. Opt out for a POST whose repeat must really run again.
        """

        def decorator(fn: View) -> View:
            op = Operation(
                method=method,
                rule=rule,
                endpoint=fn.__name__,
                summary=summary,
                tag=tag,
                body=body,
                query=query,
                status=status,
                auth=auth,
                errors=errors,
                idempotent=idempotent and auth and method == "POST",
                response=response,
                content=content,
            )
            self.operations.append(op)
            bp.add_url_rule(rule, endpoint=fn.__name__, view_func=_view(op, fn), methods=[method])
            return fn

        return decorator


def _view(op: Operation, fn: View) -> View:
    """The Flask view of ``fn``: checked path values, parsed body and query, replays."""

    @functools.wraps(fn)
    def view(**params: Any) -> Any:
        check_path_params(params)
        kwargs = dict(params)
        if op.body is not None:
            kwargs["body"] = parse_body(op.body)
        if op.query is not None:
            kwargs["query"] = parse_query(op.query)

        def answer() -> Response:
            result = fn(**kwargs)
            if isinstance(result, Response):
                return result
            return json_response(result, op.status)

        key = request.headers.get(idempotency.HEADER) if op.idempotent else None
        if key is None:
            return answer()
        return keyed_answer(key, op.status, answer)

    return view


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")), status=status, mimetype="application/json"
    )
