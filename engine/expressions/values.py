"""What the expression language knows about values: its error, type names, the checks
every function and operator shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_STRING_LENGTH = 100_000
MAX_SEQUENCE_LENGTH = 100_000


class ExpressionError(ValueError):
    """The expression is not allowed, does not parse, or failed while being evaluated."""


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def checked_string(value: str) -> str:
    if len(value) > MAX_STRING_LENGTH:
        raise ExpressionError(f"string result longer than {MAX_STRING_LENGTH} characters")
    return value


def membership(item: Any, container: Any) -> bool:
    if isinstance(container, str) and not isinstance(item, str):
        raise ExpressionError(f"'in <string>' needs a string on the left, got {type_name(item)}")
    if not isinstance(container, str | list | tuple | Mapping):
        raise ExpressionError(f"'in' needs a string, list or object, got {type_name(container)}")
    try:
        return item in container
    except TypeError as exc:  # an unhashable key looked up in an object
        raise ExpressionError(f"cannot look up {type_name(item)} in an object") from exc
