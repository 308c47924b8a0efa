"""Model answers checked against the JSON schema they were asked to fit.

A model may answer anything: a string where the schema wants a number, a category outside
the list, a part name nobody asked for. An answer that does not validate is a failed
answer (``bad_model_answer``, with the validator's reasons); consensus reconciles only the
valid ones. The schemas are the tenant's: evaluating them never retrieves anything.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError, UnknownType
from referencing import Registry
from referencing.exceptions import Unresolvable

BAD_ANSWER = "bad_model_answer"
INVALID_SCHEMA = "invalid_schema"
ALL_FAILED = "consensus_failed"
_REASONS_SHOWN = 3


class SchemaUnusable(ValueError):
    """The block's schema cannot be evaluated (it is no valid JSON schema)."""


def answer_problem(schema: Mapping[str, Any], answer: Any) -> str | None:
    """Why ``answer`` does not fit ``schema`` (the first few reasons), or None if it does."""
    validator = _validator(json.dumps(schema, sort_keys=True, default=str))
    try:
        errors = sorted(validator.iter_errors(answer), key=lambda e: list(e.absolute_path))
    except (Unresolvable, UnknownType) as exc:
        raise SchemaUnusable(f"the block's schema cannot be evaluated: {exc}") from None
    if not errors:
        return None
    reasons = [f"at {_where(e.absolute_path)}: {e.message}" for e in errors[:_REASONS_SHOWN]]
    more = len(errors) - _REASONS_SHOWN
    if more > 0:
        reasons.append(f"and {more} more")
    return "the answer does not fit the schema: " + "; ".join(reasons)


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_json)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise SchemaUnusable(
            f"the block's schema is not a valid JSON schema: {exc.message}"
        ) from None
    # An empty registry: a "$ref" to anything outside the schema is unresolvable, never fetched.
    return jsonschema.Draft202012Validator(schema, registry=Registry())


def _where(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top"


def none_valid(failures: Sequence[tuple[str | None, str | None]]) -> tuple[str, str]:
    """The owner's error when no attempt gave a usable answer: ``(type, message)``.

    ``failures`` holds each attempt's ``(error_type, error_message)``. When models answered
    but no answer fit, the block failed on its answers; when no model answered, the calls did.
    """
    n = len(failures)
    bad = [message for kind, message in failures if kind == BAD_ANSWER]
    if bad:
        return BAD_ANSWER, f"none of the {n} answers fits the schema ({bad[0]})"
    return ALL_FAILED, f"all {n} attempts failed"
