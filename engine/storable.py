"""Whether a value can be stored, checked before it is written, the same on every database.

PostgreSQL's ``jsonb`` refuses ``Infinity``, ``NaN``, the NUL character and lone UTF-16
surrogates, its text columns refuse NUL, and a ``varchar`` refuses a longer string; SQLite
stores most of these and hands them back changed. Checking here first makes a block whose
output cannot be stored fail with a message that names the value and where it is, on
every database, instead of the write failing half-way through a settle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from engine.db.models import Step

_MAX_DEPTH = 200
# The longest step id the ``steps.step_id`` column holds.
STEP_ID_LENGTH: int = int(getattr(Step.__table__.c.step_id.type, "length", 400))


class Unstorable(Exception):
    """A value about to be written is one the database would refuse."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def unstorable(value: Any, path: str = "") -> str | None:
    """``None`` when ``value`` can be stored as JSON; else what cannot, and where."""
    return _walk(value, path, 0)


def _at(path: str) -> str:
    return f"at {path}" if path else "at the top"


def _walk(value: Any, path: str, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return f"nesting deeper than {_MAX_DEPTH} levels {_at(path)}"
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return f"the number {'NaN' if math.isnan(value) else value} {_at(path)}"
    if isinstance(value, str):
        bad = _bad_character(value)
        return None if bad is None else f"{bad} in the string {_at(path)}"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a {type(key).__name__} key {_at(path)}"
            bad = _bad_character(key)
            if bad is not None:
                return f"{bad} in a key {_at(path)}"
            found = _walk(item, f"{path}.{key}" if path else key, depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _walk(item, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    return f"a {type(value).__name__} {_at(path)}"


def _bad_character(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL character (\\u0000)"
    try:
        text.encode("utf-8")  # fast: a lone surrogate is the only thing that cannot encode
    except UnicodeEncodeError as exc:
        return f"a lone surrogate (\\u{ord(text[exc.start]):04x})"
    return None


def clean_text(text: str) -> str:
    """``text`` with what no database column can hold written out as escapes."""
    if _bad_character(text) is None:
        return text
    return "".join(
        "\\u0000" if ch == "\x00" else f"\\u{ord(ch):04x}" if "\ud800" <= ch <= "\udfff" else ch
        for ch in text
    )


def check_step_id(step_id: str) -> None:
    """Raise :class:`Unstorable` for a step id longer than its column."""
    if len(step_id) > STEP_ID_LENGTH:
        raise Unstorable(
            f"the step id {clean_text(step_id[:80])}... is {len(step_id)} characters long, "
            f"more than the {STEP_ID_LENGTH} a step id may have"
        )
