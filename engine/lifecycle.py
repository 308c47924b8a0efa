"""Lifecycles as data: states, the allowed moves, terminal sets and one ``transition()``.

Every state change is a compare-and-set on the row (``UPDATE ... WHERE state IN (...)``),
so a duplicate or late message finds the row no longer in the expected state and changes
nothing. Callers learn from the returned count whether their move happened.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session


class StepState(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class RunStatus(enum.StrEnum):
    NOT_STARTED = "not_started"
    STARTED = "started"
    RUNNING = "running"
    WAITING = "waiting_for_user_input"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABORTED_LOOPING = "aborted_looping_risk"


class TerminationReason(enum.StrEnum):
    EXECUTION_ERROR = "execution_error"
    STALE_RUN_REAPER = "stale_run_reaper"
    FINALLY_SAFETY_NET = "finally_safety_net"
    CANCELLED = "cancelled"
    LOOPING_RISK = "looping_risk"


@dataclass(frozen=True, kw_only=True)
class Machine:
    """One lifecycle: which moves are allowed, and which states end it."""

    name: str
    column: str
    moves: Mapping[str, frozenset[str]]
    terminal: frozenset[str]

    def allowed(self, source: str, target: str) -> bool:
        return target in self.moves.get(source, frozenset())

    def sources_of(self, target: str) -> frozenset[str]:
        return frozenset(s for s, targets in self.moves.items() if target in targets)

    def is_terminal(self, state: str) -> bool:
        return state in self.terminal


S = StepState
STEP = Machine(
    name="step",
    column="state",
    moves={
        S.PENDING: frozenset({S.QUEUED, S.CANCELLED, S.SKIPPED}),
        S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.SKIPPED}),
        # running -> queued is the retry after a lost worker (a redelivered message).
        S.RUNNING: frozenset({S.COMPLETED, S.ERROR, S.CANCELLED, S.QUEUED}),
        S.COMPLETED: frozenset(),
        S.ERROR: frozenset(),
        S.CANCELLED: frozenset(),
        S.SKIPPED: frozenset(),
    },
    terminal=frozenset({S.COMPLETED, S.ERROR, S.CANCELLED, S.SKIPPED}),
)
OPEN_STEP_STATES = frozenset(set(StepState) - STEP.terminal)

R = RunStatus
_RUN_ENDS = {R.FAILED, R.CANCELLED}
RUN = Machine(
    name="run",
    column="status",
    moves={
        R.NOT_STARTED: frozenset({R.STARTED, R.PAUSED, *_RUN_ENDS}),
        R.STARTED: frozenset({R.RUNNING, R.PAUSED, R.COMPLETED, R.ABORTED_LOOPING, *_RUN_ENDS}),
        R.RUNNING: frozenset({R.WAITING, R.PAUSED, R.COMPLETED, R.ABORTED_LOOPING, *_RUN_ENDS}),
        R.WAITING: frozenset({R.RUNNING, *_RUN_ENDS}),
        R.PAUSED: frozenset({R.RUNNING, *_RUN_ENDS}),
        R.COMPLETED: frozenset(),
        R.FAILED: frozenset(),
        R.CANCELLED: frozenset(),
        R.ABORTED_LOOPING: frozenset(),
    },
    terminal=frozenset({R.COMPLETED, R.FAILED, R.CANCELLED, R.ABORTED_LOOPING}),
)


class IllegalTransition(ValueError):
    """A caller asked for a move that the table never allows (a programming error)."""


def transition(
    session: Session,
    machine: Machine,
    model: Any,
    ids: str | Iterable[str],
    target: str,
    *,
    expect: Iterable[str] | None = None,
    where: Iterable[Any] = (),
    values: Mapping[str, Any] | None = None,
) -> int:
    """Move rows to ``target`` if, and only if, they are in a state allowed to move there.

    ``expect`` narrows the accepted source states (it may not widen them); ``where`` adds
    fencing conditions such as the claim's attempt number. Returns how many rows moved:
    0 means the row had already moved on and the caller's message is stale.
    """
    stmt = _move(machine, model, ids, target, expect=expect, where=where, values=values)
    if stmt is None:
        return 0
    result = session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


def transition_returning(
    session: Session,
    machine: Machine,
    model: Any,
    row_id: str,
    target: str,
    *,
    expect: Iterable[str] | None = None,
    where: Iterable[Any] = (),
    values: Mapping[str, Any] | None = None,
) -> Any | None:
    """:func:`transition` of one row that returns the moved row (``None`` if it did not move).

    The hot path of a claim: the compare-and-set and the read of the row in one statement.
    """
    stmt = _move(machine, model, row_id, target, expect=expect, where=where, values=values)
    assert stmt is not None
    stmt = stmt.returning(model).execution_options(
        synchronize_session=False, populate_existing=True
    )
    return session.execute(stmt).scalar_one_or_none()


def _move(
    machine: Machine,
    model: Any,
    ids: str | Iterable[str],
    target: str,
    *,
    expect: Iterable[str] | None,
    where: Iterable[Any],
    values: Mapping[str, Any] | None,
) -> Any | None:
    sources = machine.sources_of(target)
    if expect is not None:
        wanted = frozenset(expect)
        illegal = wanted - sources
        if illegal:
            raise IllegalTransition(
                f"{machine.name}: {sorted(illegal)} -> {target} is not an allowed move"
            )
        sources = wanted
    if not sources:
        raise IllegalTransition(f"{machine.name}: nothing may move to {target}")
    id_list = [ids] if isinstance(ids, str) else list(ids)
    if not id_list:
        return None
    column = getattr(model, machine.column)
    stmt = (
        update(model)
        .where(model.id.in_(id_list) if len(id_list) > 1 else model.id == id_list[0])
        .where(column.in_(sorted(sources)))
        .values({machine.column: target, **(values or {})})
        # Loaded rows take the new values too (evaluated in Python, no extra statement), so
        # a caller holding the object reads what it just wrote without a refresh.
        .execution_options(synchronize_session="evaluate")
    )
    for condition in where:
        stmt = stmt.where(condition)
    return stmt
