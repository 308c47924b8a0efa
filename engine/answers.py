"""Model answers checked against the JSON schema they were asked to fit.

A model may answer anything: a string where the schema wants a number, a category outside
the list, a part name nobody asked for. An answer that does not validate is a failed
answer (``bad_model_answer``, with the validator's reasons); consensus reconciles only the
valid ones. The schemas are the tenant's: evaluating them never retrieves anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.schemas import MAX_VIOLATIONS, SchemaUnusable, violations

BAD_ANSWER = "bad_model_answer"
INVALID_SCHEMA = "invalid_schema"
ALL_FAILED = "consensus_failed"
_REASONS_SHOWN = 3

__all__ = ["ALL_FAILED", "BAD_ANSWER", "INVALID_SCHEMA", "SchemaUnusable", "answer_problem"]


def answer_problem(schema: Mapping[str, Any], answer: Any) -> str | None:
    """Why ``answer`` does not fit ``schema`` (the first few reasons), or None if it does.

    The one safe validator of tenant schemas (:mod:`engine.schemas`) evaluates it: nothing
    is retrieved, patterns run on RE2, the work is bounded. :class:`SchemaUnusable` when
    the schema cannot be evaluated.
    """
    found = violations(schema, answer)
    if not found:
        return None
    reasons = [f"at {_where(v.path)}: {v.message}" for v in found[:_REASONS_SHOWN]]
    more = len(found) - _REASONS_SHOWN
    if more > 0:
        reasons.append(f"and {more}{'+' if len(found) >= MAX_VIOLATIONS else ''} more")
    return "the answer does not fit the schema: " + "; ".join(reasons)


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
