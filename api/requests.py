"""Reading a request: path values, the JSON body and the query string, each checked.

Anything a client can send wrong answers a 4xx problem here (400, 413, 415, 422, or 404 for
a path value that cannot name anything), before a view runs and never as a 500 later.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import current_app, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from api.problems import ApiProblem, validation_errors
from engine.blocks.base import BLOCK_ID
from engine.errors import FieldError
from engine.ids import is_id

MAX_INT = 2**31 - 1  # path numbers map to 32-bit integer columns


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
