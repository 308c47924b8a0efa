"""The OpenAPI 3.1 document, built from the operations the routes registered.

Each operation declares its body, query and answer models once (see ``api.routing``); the
same declaration validates requests and describes them here.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import engine.idempotency as idempotency
from api.idempotent import REPLAYED_HEADER
from api.requests import MAX_INT
from api.resources import Problem
from api.routing import JSON, Operation, Registry

PROBLEM_JSON = "application/problem+json"
REF = "#/components/schemas/"

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
    return HTTPStatus(code).phrase
