"""A result the database cannot store fails its block at once, as ``invalid_output``.

Two layers. Before a settle, the result is screened (``engine.storable``): an output
holding ``Infinity``, ``NaN``, a NUL character or a lone surrogate is turned into a
failure that names the value, on every database alike. If the database still refuses a
write of the settle (a value the screen does not know, such as a string longer than its
column), the settle's transaction has rolled back and the block is failed in a fresh one,
with the database's reason. Neither is retried: a refused value is refused again on
every retry, and retrying would only run the block again and again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from engine.dbfaults import refused_value
from engine.execute import BlockFailed, Outcome
from engine.providers.base import ModelResponse
from engine.storable import Unstorable, clean_text, unstorable

log = logging.getLogger("quorum.refusals")

INVALID_OUTPUT = "invalid_output"
# The error_type column's width.
_ERROR_TYPE_LENGTH = 200

R = TypeVar("R")


def screen(result: R) -> R | BlockFailed:
    """``result``, or the failure it stands for when it holds what cannot be stored."""
    if isinstance(result, BlockFailed):
        # User code's exception text may hold a NUL too: write it out instead of failing.
        result.message = clean_text(result.message)
        result.error_type = clean_text(result.error_type)[:_ERROR_TYPE_LENGTH]
        return result
    what: str | None = None
    if isinstance(result, Outcome):
        what = unstorable(result.outputs) or unstorable(result.consensus, "consensus")
    elif isinstance(result, ModelResponse):
        what = unstorable(result.data, "answer")
    if what is None:
        return result
    return BlockFailed(INVALID_OUTPUT, f"the output cannot be stored: {what}")


def settle_screened(settle: Callable[[Any], None], result: Any, *, row: str) -> None:
    """Settle ``result`` screened; if the database refuses it, settle the refusal instead."""
    try:
        settle(screen(result))
    except Exception as exc:
        reason = exc.what if isinstance(exc, Unstorable) else refused_value(exc)
        if reason is None:
            raise
        log.warning("the database refused a result", extra={"row": row, "reason": reason})
        failure = BlockFailed(INVALID_OUTPUT, f"the output cannot be stored: {reason}")
        settle(screen(failure))
