"""A small route registry: request parsing, problem answers and the OpenAPI document.

Each operation declares its body and query models once; the same declaration validates
requests and describes them in ``/openapi.json``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from api.problems import ApiProblem, validation_errors
from api.schemas import Problem
from engine.errors import FieldError
from engine.ids import is_id

View = Callable[..., Any]
_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


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

    @property
    def openapi_path(self) -> str:
        return _PARAM.sub(r"{\1}", self.rule)

    @property
    def path_params(self) -> list[str]:
        return _PARAM.findall(self.rule)


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
    ) -> Callable[[View], View]:
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
            )
            self.operations.append(op)

            @functools.wraps(fn)
            def view(**params: Any) -> Any:
                for name, value in params.items():
                    # An id that cannot exist is simply not found.
                    if name.endswith("id") and name != "block_id" and not is_id(value):
                        raise ApiProblem(404, f"{name.replace('_', ' ')} {value!r} not found")
                kwargs = dict(params)
                if body is not None:
                    kwargs["body"] = parse_body(body)
                if query is not None:
                    kwargs["query"] = parse_query(query)
                result = fn(**kwargs)
                if isinstance(result, Response):
                    return result
                return json_response(result, status)

            bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=[method])
            return fn

        return decorator


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")), status=status, mimetype="application/json"
    )


def _depth(value: Any) -> int:
    depth, stack = 0, [(value, 1)]
    while stack:
        item, d = stack.pop()
        depth = max(depth, d)
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return depth


def read_json() -> Any:
    if "json" not in (request.mimetype or ""):
        raise ApiProblem(415, "send the body as application/json")
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiProblem(400, "the request body is empty; a JSON object is expected")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiProblem(
            422,
            "the JSON body is nested too deeply",
            errors=[FieldError(loc=("body",), msg="nested too deeply")],
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, f"the body is not valid JSON: {exc}") from None
    limit = int(current_app.config["QUORUM_MAX_JSON_DEPTH"])
    if _depth(data) > limit:
        raise ApiProblem(
            422,
            f"the JSON body is nested deeper than {limit} levels",
            errors=[FieldError(loc=("body",), msg=f"at most {limit} levels")],
        )
    return data


def parse_body(model: type[BaseModel]) -> BaseModel:
    data = read_json()
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


def openapi_document(registry: Registry, *, title: str, version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {Problem}
    for op in registry.operations:
        models.update(m for m in (op.body,) if m is not None)
    _, schemas = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    components = dict(schemas.get("$defs", {}))
    paths: dict[str, Any] = {}
    for op in registry.operations:
        item = paths.setdefault(op.openapi_path, {})
        params: list[dict[str, Any]] = [
            {
                "name": p,
                "in": "path",
                "required": True,
                "schema": {
                    "type": "string",
                    **(
                        {"pattern": "^[a-z][a-z0-9_-]{0,63}$"}
                        if p == "block_id"
                        else {"pattern": "^[0-9a-f]{24}$"}
                        if p.endswith("id")
                        else {"type": "integer", "minimum": 0}
                    ),
                },
            }
            for p in op.path_params
        ]
        if op.query is not None:
            qschema = op.query.model_json_schema()
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": False, "schema": prop})
        problem_ref = {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
        responses: dict[str, Any] = {
            str(op.status): {
                "description": "success",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        }
        codes = (
            set(op.errors)
            | ({401} if op.auth else set())
            | ({400, 413, 415, 422} if op.body else set())
        )
        codes |= {422} if op.query else set()
        codes |= {404} if op.path_params else set()
        for code in sorted(codes):
            responses[str(code)] = {"description": _describe(code), "content": problem_ref}
        operation: dict[str, Any] = {
            "operationId": op.endpoint,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": params,
            "responses": responses,
        }
        if op.auth:
            operation["security"] = [{"bearer": []}]
        if op.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}
                    }
                },
            }
        item[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _describe(code: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(code).phrase


def principal() -> Any:
    return g.principal
