"""Ports: what the core needs from the outside world, as protocols.

``workers`` implements :class:`Dispatcher` on Celery; tests and the embedded default
may use others. Storage is SQLAlchemy (``engine.db``), which already abstracts the
database, so it needs no port of its own.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class WorkKind(enum.StrEnum):
    STEP = "step"
    EXECUTION = "execution"
    SAMPLE = "sample"


@dataclass(frozen=True, kw_only=True)
class Work:
    """A message: "this row is ready, claim it". Never carries the row's data."""

    kind: WorkKind
    id: str
    # Deliver no sooner than this (a retry's backoff).
    delay_s: float = 0.0


class Dispatcher(Protocol):
    def dispatch(self, work: Sequence[Work]) -> None:
        """Publish every item; raise if the broker did not take them."""
        ...

    def revoke(self, work: Sequence[Work]) -> None:
        """Best effort: stop a running item (its fenced completion is discarded anyway)."""
        ...
