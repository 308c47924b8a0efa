"""Step paths and scopes, and the small values the scheduler passes around."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.clock import as_utc

_SCOPE_TAIL = re.compile(r"^(?:(?P<parent>.*)/)?(?P<fe>[a-z][a-z0-9_-]*)\[(?P<index>\d+)\]$")

# A completed human_input step whose answer has not arrived yet.
AWAITING = "awaiting_input"
ANSWERED = "answered"


class LoopingRisk(Exception):
    def __init__(self, block_id: str, visits: int) -> None:
        super().__init__(f"block {block_id!r} would run {visits} times in one turn")
        self.block_id = block_id


def step_path(turn: int, scope: str, block_id: str, visit: int) -> str:
    name = block_id if visit <= 1 else f"{block_id}~{visit}"
    parts = [f"t{turn}"] if turn else []
    if scope:
        parts.append(scope)
    parts.append(name)
    return "/".join(parts)


def split_scope(scope: str) -> tuple[str, str, int]:
    """``"a[1]/pages[2]"`` -> (parent scope ``"a[1]"``, for_each id ``"pages"``, index 2)."""
    m = _SCOPE_TAIL.match(scope)
    if m is None:
        raise ValueError(f"not an iteration scope: {scope!r}")
    return m.group("parent") or "", m.group("fe"), int(m.group("index"))


@dataclass(kw_only=True)
class Resolved:
    """What the scheduler needs of an ended step (its row may not be flushed yet)."""

    id: str
    block_id: str
    scope: str
    turn: int
    visit: int
    state: str
    active: tuple[str, ...]
    outputs: dict[str, Any]


def resolved_from_row(row: dict[str, Any]) -> Resolved:
    return Resolved(
        id=row["id"],
        block_id=row["block_id"],
        scope=row["scope"],
        turn=row["turn_index"],
        visit=row["visit"],
        state=row["state"],
        active=(),
        outputs={},
    )


def elapsed_ms(start: datetime | None, end: datetime) -> int | None:
    s = as_utc(start)
    return None if s is None else int((end - s).total_seconds() * 1000)
