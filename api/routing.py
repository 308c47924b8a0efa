"""A small route registry: request parsing, problem answers and the OpenAPI document.

Each operation declares its body and query models once; the same declaration validates
requests and describes them in ``/openapi.json``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from werkzeug.exceptions import RequestEntityTooLarge

import engine.idempotency as idempotency
from api.idempotent import REPLAYED_HEADER, keyed_answer
from api.problems import ApiProblem, validation_errors
from api.resources import Problem
from engine.blocks import BLOCK_ID
from engine.errors import FieldError
from engine.ids import is_id

View = Callable[..., Any]
_PARAM = re.compile(r"<(?:([a-z]+):)?([a-z_]+)>")
MAX_INT = 2**31 - 1  # path numbers map to 32-bit integer columns
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
REF = "#/components/schemas/"
log = logging.getLogger("quorum.api")


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

            @functools.wraps(fn)
            def view(**params: Any) -> Any:
                check_path_params(params)
                kwargs = dict(params)
                if body is not None:
                    kwargs["body"] = parse_body(body)
                if query is not None:
                    kwargs["query"] = parse_query(query)

                def answer() -> Response:
                    result = fn(**kwargs)
                    if isinstance(result, Response):
                        return result
                    return json_response(result, status)

                key = request.headers.get(idempotency.HEADER) if op.idempotent else None
                if key is None:
                    return answer()
                return keyed_answer(key, status, answer)

            bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=[method])
            return fn

        return decorator


def check_path_params(params: dict[str, Any]) -> None:
    """A path value that cannot name anything is simply not found (never a 500 later)."""
    for name, value in params.items():
        label = "version" if name == "number" else name.replace("_", " ")
        if isinstance(value, int):
            if not 0 <= value <= MAX_INT:
                raise ApiProblem(404, f"{label} {value} not found")
        elif name == "block_id":
            if not BLOCK_ID.fullmatch(value):
                raise ApiProblem(404, f"{label} {value!r} not found")
        elif name.endswith("id") and not is_id(value):
            raise ApiProblem(404, f"{label} {value!r} not found")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")), status=status, mimetype="application/json"
    )


class _Unstorable(Exception):
    """A JSON number no column can hold (infinite float, integer of thousands of digits)."""


class _NotJson(ValueError):
    pass


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unstorable(text)
    return value


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than Python converts
        raise _Unstorable(text[:20] + "...") from None


def _parse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


# NUL and lone surrogates are valid in JSON text but cannot be stored (PostgreSQL text
# and jsonb refuse NUL; UTF-8 cannot encode a surrogate).
_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def _check_tree(data: Any, limit: int) -> None:
    """Refuse values nested deeper than ``limit`` or holding unstorable strings."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(data, 1, ("body",))]
    while stack:
        item, depth, loc = stack.pop()
        if depth > limit:
            raise ApiProblem(
                422,
                f"the JSON body is nested deeper than {limit} levels",
                errors=[FieldError(loc=("body",), msg=f"at most {limit} levels")],
            )
        if isinstance(item, dict):
            for k, v in item.items():
                if _UNSTORABLE_CHARS.search(k):
                    raise _unstorable_text(loc, "an object key")
                stack.append((v, depth + 1, (*loc, k)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1, (*loc, i)) for i, v in enumerate(item))
        elif isinstance(item, str) and _UNSTORABLE_CHARS.search(item):
            raise _unstorable_text(loc, "a string")


def _unstorable_text(loc: tuple[str | int, ...], what: str) -> ApiProblem:
    msg = f"{what} contains a NUL character or an unpaired surrogate"
    return ApiProblem(
        422,
        "the request body holds text that cannot be stored",
        errors=[FieldError(loc=loc, msg=msg)],
    )


def read_json(*, empty: Any = None) -> Any:
    """The request's JSON body; ``empty`` stands in for an empty body when not None."""
    raw = request.get_data(cache=True)  # 413 past MAX_CONTENT_LENGTH...
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and request.content_length is None and len(raw) >= limit:
        # ...but a streamed (chunked) body is silently cut at the limit by werkzeug:
        # one that reaches it is refused rather than parsed truncated.
        raise RequestEntityTooLarge()
    if not raw.strip():
        if empty is not None:
            return empty
        raise ApiProblem(400, "the request body is empty; a JSON object is expected")
    if not request.is_json:
        raise ApiProblem(415, "send the body as application/json")
    try:
        data = json.loads(
            raw,
            parse_float=_parse_float,
            parse_int=_parse_int,
            parse_constant=_parse_constant,
        )
    except RecursionError:
        raise ApiProblem(
            422,
            "the JSON body is nested too deeply",
            errors=[FieldError(loc=("body",), msg="nested too deeply")],
        ) from None
    except _Unstorable as exc:
        raise ApiProblem(
            422,
            f"the number {exc} is out of range",
            errors=[FieldError(loc=("body",), msg="numbers must be finite and of sane size")],
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, f"the body is not valid JSON: {exc}") from None
    _check_tree(data, int(current_app.config["QUORUM_MAX_JSON_DEPTH"]))
    return data


def parse_body(model: type[BaseModel]) -> BaseModel:
    # No body at all reads as {}: an operation whose fields are all optional needs none,
    # and the others answer 422 naming each missing field.
    data = read_json(empty={})
    if not isinstance(data, dict):
        raise ApiProblem(
            422,
            "the body must be a JSON object",
            errors=[FieldError(loc=("body",), msg="an object is required")],
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiProblem(
            422, "the request body is invalid", errors=validation_errors(exc, "body")
        ) from None


def parse_query(model: type[BaseModel]) -> BaseModel:
    args: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        args[key] = values[0] if len(values) == 1 else values
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise ApiProblem(
            422, "the query string is invalid", errors=validation_errors(exc, "query")
        ) from None


# Every answer to an authenticated request carries the key's budget (see api.ratelimit);
# one over the limit answers 429 with Retry-After.
RATE_LIMIT_HEADERS: dict[str, Any] = {
    "RateLimit-Limit": {
        "description": "requests allowed in the current window",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Remaining": {
        "description": "requests left in the current window",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Reset": {
        "description": "seconds until the window resets",
        "schema": {"type": "integer", "minimum": 0},
    },
}
RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}


def openapi_document(registry: Registry, *, title: str, version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {Problem}
    for op in registry.operations:
        models.update(m for m in (op.body, op.response) if m is not None)
    _, schemas = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=REF + "{model}",
    )
    components = dict(schemas.get("$defs", {}))
    paths: dict[str, Any] = {}
    for op in registry.operations:
        item = paths.setdefault(op.openapi_path, {})
        operation: dict[str, Any] = {
            "operationId": op.endpoint,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": _parameters(op),
            "responses": _responses(op),
        }
        if op.auth:
            operation["security"] = [{"bearer": []}]
        if op.body is not None:
            operation["requestBody"] = {
                # A body whose fields are all optional may be left out (it reads as {}).
                "required": any(f.is_required() for f in op.body.model_fields.values()),
                "content": {JSON: {"schema": {"$ref": REF + op.body.__name__}}},
            }
        item[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": title,
            "version": version,
            "description": "Errors are RFC 9457 problems (application/problem+json).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key: Authorization: Bearer <key>",
                }
            },
        },
    }


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": _path_schema(p, conv)}
        for p, conv in op.converters.items()
    ]
    if op.idempotent:
        params.append(
            {
                "name": idempotency.HEADER,
                "in": "header",
                "required": False,
                "description": "a repeat of a successful POST with the same key and body"
                " returns the first answer (with the header Idempotent-Replayed: true); a"
                " key still in use answers 409, a key first used on another route or with"
                " another body 422",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": idempotency.MAX_KEY_LENGTH,
                    "pattern": "^[\\x20-\\x7e]+$",
                },
            }
        )
    if op.query is not None:
        qschema = op.query.model_json_schema(ref_template=REF + "{model}")
        for name, prop in qschema.get("properties", {}).items():
            params.append({"name": name, "in": "query", "required": False, "schema": prop})
    return params


def _responses(op: Operation) -> dict[str, Any]:
    if op.response is not None:
        schema: dict[str, Any] = {"$ref": REF + op.response.__name__}
    else:
        schema = {"type": "object"} if op.content == (JSON,) else {"type": "string"}
    success: dict[str, Any] = {
        "description": _describe(op.status),
        "content": {media: {"schema": schema} for media in op.content},
    }
    headers: dict[str, Any] = {}
    if op.auth:
        headers.update(RATE_LIMIT_HEADERS)
    if op.idempotent:
        headers[REPLAYED_HEADER] = {
            "description": "present (true) when this is the stored first answer to the key",
            "schema": {"type": "string", "enum": ["true"]},
        }
    if headers:
        success["headers"] = headers
    responses: dict[str, Any] = {str(op.status): success}
    codes = (
        set(op.errors)
        | ({401, 429, 503} if op.auth else set())
        | ({400, 413, 415, 422} if op.body else set())
    )
    codes |= {422} if op.query else set()
    codes |= {404} if op.path_params else set()
    codes |= {409, 422} if op.idempotent else set()
    problem = {PROBLEM_JSON: {"schema": {"$ref": REF + "Problem"}}}
    for code in sorted(codes):
        answer: dict[str, Any] = {"description": _describe(code), "content": problem}
        if op.auth and code != 401:  # refused before the key was known: not counted
            answer["headers"] = dict(RATE_LIMIT_HEADERS)
        if code == 401:
            answer["headers"] = {
                "WWW-Authenticate": {
                    "description": 'the Bearer challenge: Bearer realm="quorum"',
                    "required": True,
                    "schema": {"type": "string", "pattern": "^Bearer "},
                }
            }
        elif code == 429:
            answer["headers"]["Retry-After"] = {**RETRY_AFTER, "required": True}
        elif code == 503:
            answer.setdefault("headers", {})["Retry-After"] = RETRY_AFTER
        responses[str(code)] = answer
    return responses


def _path_schema(name: str, converter: str) -> dict[str, Any]:
    if converter == "int":
        return {"type": "integer", "minimum": 0, "maximum": MAX_INT}
    if name == "block_id":
        return {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$"}
    if name.endswith("id"):
        return {"type": "string", "pattern": "^[0-9a-f]{24}$"}
    return {"type": "string"}


def _describe(code: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(code).phrase


def principal() -> Any:
    return g.principal
