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


class Metrics(Protocol):
    """What a worker observes about the work it does (``workers.metrics`` exports it)."""

    def observe_queue_wait(self, *, kind: str, block_type: str, seconds: float) -> None:
        """A row was claimed ``seconds`` after it was queued."""
        ...

    def observe_block_run(self, *, block_type: str, outcome: str, seconds: float) -> None:
        """A claimed block produced its result (or failed) after ``seconds``."""
        ...

    def count_sample(self, *, block_type: str, failure: str | None) -> None:
        """A consensus sample (one model call) ended; ``failure`` is its error type, if any."""
        ...


class NoMetrics:
    """Observes nothing: the default, and a worker without a metrics port."""

    def observe_queue_wait(self, *, kind: str, block_type: str, seconds: float) -> None:
        pass

    def observe_block_run(self, *, block_type: str, outcome: str, seconds: float) -> None:
        pass

    def count_sample(self, *, block_type: str, failure: str | None) -> None:
        pass
