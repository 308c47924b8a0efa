"""Whether a value a block produced is JSON, and if not, where and what it is.

User code may return anything Python can hold; only JSON can be stored and handed to the
next block. Finding the first value that is not (a ``set``, a ``datetime``, a tuple key, a
NaN) lets the block fail with a message that names it, instead of the store refusing it.
"""

from __future__ import annotations

import math
from typing import Any

_MAX_DEPTH = 200


def not_json(value: Any, path: str = "") -> str | None:
    """``None`` when ``value`` is JSON; else what is not, e.g. ``"a set at [2].tags"``."""
    return _walk(value, path, 0)


def _walk(value: Any, path: str, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return f"nesting deeper than {_MAX_DEPTH} levels at {path or 'the top'}"
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"the number {value} at {path or 'the top'}"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a {type(key).__name__} key {key!r} at {path or 'the top'}"
            found = _walk(item, f"{path}.{key}" if path else key, depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):  # a tuple is stored as the array it reads as
        for i, item in enumerate(value):
            found = _walk(item, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    return f"a {type(value).__name__} at {path or 'the top'}"
