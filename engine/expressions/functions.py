"""The functions a condition may call, with how many arguments each takes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.expressions.values import (
    ExpressionError,
    checked_string,
    is_number,
    membership,
    type_name,
)

# round(10, -10**6) would compute 10**(10**6); no sane condition needs more digits than this.
_MAX_ROUND_DIGITS = 100


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ExpressionError(f"{name}() needs a string, got {type_name(value)}")
    return value


def _fn_len(value: Any) -> int:
    if not isinstance(value, str | list | tuple | Mapping):
        raise ExpressionError(f"len() needs a string, list or object, got {type_name(value)}")
    return len(value)


def _string_fn(name: str, method: Callable[[str], str]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        return None if value is None else method(_text(name, value))

    return apply


def _affix_fn(name: str, method: Callable[[str, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(value: Any, affix: Any) -> bool:
        if value is None:
            return False
        options = tuple(affix) if isinstance(affix, list | tuple) else (affix,)
        for option in options:
            _text(name, option)
        return method(_text(name, value), options)

    return apply


def _fn_contains(container: Any, item: Any) -> bool:
    if container is None:
        return False
    return membership(item, container)


def _number(name: str, value: Any) -> int | float:
    if not is_number(value):
        raise ExpressionError(f"{name}() needs a number, got {type_name(value)}")
    result: int | float = value
    return result


def _fn_abs(value: Any) -> int | float:
    return abs(_number("abs", value))


def _extreme(name: str, pick: Callable[..., Any]) -> Callable[..., Any]:
    def apply(*args: Any) -> Any:
        items = args[0] if len(args) == 1 else args
        if not isinstance(items, list | tuple):
            raise ExpressionError(f"{name}() needs a list or several arguments")
        if not items:
            raise ExpressionError(f"{name}() of an empty list")
        try:
            return pick(items)
        except TypeError as exc:
            raise ExpressionError(f"{name}() cannot compare these values") from exc

    return apply


def _convert(name: str, kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if name in ("int", "float") and not isinstance(value, int | float | str):
            raise ExpressionError(f"{name}() cannot convert {type_name(value)}")
        try:
            result = kind(value)
        except (ValueError, OverflowError) as exc:
            raise ExpressionError(f"{name}() cannot convert {value!r:.80}") from exc
        return checked_string(result) if isinstance(result, str) else result

    return apply


def _fn_round(value: Any, digits: Any = None) -> int | float:
    number = _number("round", value)
    if digits is not None:
        if not isinstance(digits, int) or isinstance(digits, bool):
            raise ExpressionError("round() needs an integer number of digits")
        if abs(digits) > _MAX_ROUND_DIGITS:
            raise ExpressionError(f"round() digits must be within ±{_MAX_ROUND_DIGITS}")
    try:
        return round(number) if digits is None else round(number, digits)
    except (ValueError, OverflowError) as exc:  # nan and infinity have no integer
        raise ExpressionError(f"round() cannot round {number!r}") from exc


def _fn_exists(value: Any) -> bool:
    return value is not None


# name -> (function, fewest arguments, most arguments or None for any number)
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "len": (_fn_len, 1, 1),
    "lower": (_string_fn("lower", str.lower), 1, 1),
    "upper": (_string_fn("upper", str.upper), 1, 1),
    "strip": (_string_fn("strip", str.strip), 1, 1),
    "startswith": (_affix_fn("startswith", str.startswith), 2, 2),
    "endswith": (_affix_fn("endswith", str.endswith), 2, 2),
    "contains": (_fn_contains, 2, 2),
    "abs": (_fn_abs, 1, 1),
    "min": (_extreme("min", min), 1, None),
    "max": (_extreme("max", max), 1, None),
    "int": (_convert("int", int), 1, 1),
    "float": (_convert("float", float), 1, 1),
    "str": (_convert("str", str), 1, 1),
    "bool": (_convert("bool", bool), 1, 1),
    "round": (_fn_round, 1, 2),
    "exists": (_fn_exists, 1, 1),
}
