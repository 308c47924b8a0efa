"""Lifecycles as data: states, the allowed moves, terminal sets and one ``transition()``.

Every state change is a compare-and-set on the row (``UPDATE ... WHERE state IN (...)``),
so a duplicate or late message finds the row no longer in the expected state and changes
nothing. Callers learn from the returned count whether their move happened.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, inspect, literal, or_, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value


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
    attempt: int | None = None,
    values: Mapping[str, Any] | None = None,
) -> int:
    """Move rows to ``target`` if, and only if, they are in a state allowed to move there.

    ``expect`` narrows the accepted source states (it may not widen them); ``attempt``
    fences the move on the claim's attempt number. Returns how many rows moved: 0 means
    the row had already moved on and the caller's message is stale. Rows of ``model``
    loaded in ``session`` take the new values, so a caller holding one reads what it wrote.
    """
    id_list = [ids] if isinstance(ids, str) else list(ids)
    if not id_list:
        return 0
    values = dict(values or {})
    stmt, params = _move(
        machine, model, id_list, target, expect=expect, attempt=attempt, values=values
    )
    moved = int(getattr(session.execute(stmt, params), "rowcount", 0) or 0)
    if moved:
        _sync_loaded(session, model, id_list, {machine.column: target, **values})
    return moved


def transition_returning(
    session: Session,
    machine: Machine,
    model: Any,
    row_id: str,
    target: str,
    *,
    expect: Iterable[str] | None = None,
    attempt: int | None = None,
    values: Mapping[str, Any] | None = None,
    bump_attempt: bool = False,
) -> Any | None:
    """:func:`transition` of one row that returns the moved row (``None`` if it did not move).

    The hot path of a claim: the compare-and-set and the read of the row in one statement.
    ``bump_attempt`` adds one to the row's attempt number (the claim's fencing token).
    The row comes back as a read-only record with the table's columns as attributes.
    """
    stmt, params = _move(
        machine,
        model,
        [row_id],
        target,
        expect=expect,
        attempt=attempt,
        values=dict(values or {}),
        bump_attempt=bump_attempt,
        returning=True,
    )
    row = session.execute(stmt, params).one_or_none()
    if row is None:
        return None
    record = row._asdict()
    _sync_loaded(session, model, [row_id], record)
    # A plain record, not the Row: a column named like a tuple method ("index") must win.
    return SimpleNamespace(**record)


def _move(
    machine: Machine,
    model: Any,
    ids: list[str],
    target: str,
    *,
    expect: Iterable[str] | None,
    attempt: int | None,
    values: dict[str, Any],
    bump_attempt: bool = False,
    returning: bool = False,
) -> tuple[Any, dict[str, Any]]:
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
    stmt = _statement(
        model.__table__,
        machine.column,
        target,
        tuple(sorted(sources)),
        tuple(sorted(values)),
        many=len(ids) > 1,
        fenced=attempt is not None,
        bump_attempt=bump_attempt,
        returning=returning,
    )
    params = {f"v_{k}": v for k, v in values.items()}
    params["w_ids" if len(ids) > 1 else "w_id"] = ids if len(ids) > 1 else ids[0]
    if attempt is not None:
        params["w_fence"] = attempt
    return stmt, params


@functools.lru_cache(maxsize=512)
def _statement(
    table: Any,
    column: str,
    target: str,
    sources: tuple[str, ...],
    keys: tuple[str, ...],
    *,
    many: bool,
    fenced: bool,
    bump_attempt: bool,
    returning: bool,
) -> Any:
    # Built (and compiled) once per shape: constructing and caching a fresh UPDATE per
    # call cost more CPU than the round trip to the database for a short block.
    c = table.c
    # The source states as plain comparisons with fixed values: an IN list would be
    # expanded again at every execution.
    state = or_(*(c[column] == literal(source) for source in sources))
    stmt = update(table).where(
        c.id.in_(bindparam("w_ids", expanding=True)) if many else c.id == bindparam("w_id"),
        state,
    )
    if fenced:
        stmt = stmt.where(c.attempt == bindparam("w_fence"))
    new: dict[str, Any] = {column: target}
    new.update({k: bindparam(f"v_{k}", type_=c[k].type) for k in keys})
    if bump_attempt:
        new["attempt"] = c.attempt + 1
    stmt = stmt.values(new)
    return stmt.returning(*c) if returning else stmt


def _sync_loaded(session: Session, model: Any, ids: list[str], values: Mapping[str, Any]) -> None:
    """Give rows of ``model`` loaded in ``session`` the values just written."""
    if not session.identity_map:
        return
    mapper = inspect(model)
    names = {col.key: prop.key for prop in mapper.column_attrs for col in prop.columns}
    for row_id in ids:
        obj = session.identity_map.get(mapper.identity_key_from_primary_key([row_id]))
        if obj is None:
            continue
        for key, value in values.items():
            if key in names:
                set_committed_value(obj, names[key], value)
