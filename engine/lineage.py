"""The turns and steps a run sees: its own, plus those it inherits from its ancestors.

A checkpoint run does not copy its parent's earlier turns: it reads them where they are.
``Run.lineage``, written once when the fork is created (a constant-size write, whatever
the parent's size), lists the ancestors it inherits from, nearest first, each with the
turn index below which it sees that ancestor's rows: ``[[parent, k], [grandparent,
min(k, k')], ...]`` for a fork at ``k`` of a fork at ``k'``. An ancestor's own rows all
lie at or above its own fork index, so the pieces never overlap. Every read of a run's
steps or turns filters with :func:`sees`, one predicate on the indexed ``(run_id,
turn_index)``: a read stays one statement whatever the depth of the chain.

A run without a lineage sees its own rows only: every run that is not a checkpoint run
(evaluation runs too, although they name the evaluated run as ``original_run_id``), and
checkpoint runs made before lineages existed, which hold copies of their parent's turns.

Inherited rows stay the ancestor's: they are read through the child, never written. A
run's current turn is always its own (the fork opens turn ``k`` in the child), so reads
confined to the current turn need no lineage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import and_, false, func, inspect, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from engine.db.models import Run, Step, Turn
from engine.pages import Page, PageRequest, paginate

# (ancestor run id, first turn index of the ancestor the run does not see), nearest first.
Lineage = tuple[tuple[str, int], ...]


def lineage_of(run: Run) -> Lineage:
    return tuple((str(a), int(below)) for a, below in (run.lineage or ()))


def child_lineage(parent: Run, k: int) -> list[list[Any]]:
    """The lineage of a checkpoint run of ``parent`` resuming at turn ``k``."""
    return [[parent.id, k], *([a, min(below, k)] for a, below in lineage_of(parent))]


# Up to this many inherited turns are named one by one: the index on (run_id, turn_index,
# scope, block_id) then seeks each turn and matches scope and block inside it, where a
# range would walk every entry of the earlier turns (10,000 for a big for_each).
_LISTED_TURNS = 32


def _below(model: type[Step] | type[Turn], below: int) -> ColumnElement[bool]:
    if below <= _LISTED_TURNS:
        return model.turn_index.in_(list(range(below)))
    return model.turn_index < below


def inherited(model: type[Step] | type[Turn], lineage: Lineage) -> ColumnElement[bool]:
    """The rows of ancestors a run with ``lineage`` sees (none without a lineage)."""
    if not lineage:
        return false()
    return or_(*(and_(model.run_id == a, _below(model, below)) for a, below in lineage))


def sees(model: type[Step] | type[Turn], run_id: Any, lineage: Lineage) -> ColumnElement[bool]:
    """The rows of ``model`` the run sees: its own, and those its lineage gives it."""
    own: ColumnElement[bool] = model.run_id == run_id
    if not lineage:
        return own
    return or_(own, inherited(model, lineage))


def seen_by(model: type[Step] | type[Turn], run: Run) -> ColumnElement[bool]:
    return sees(model, run.id, lineage_of(run))


def count_inherited(s: Session, lineage: Lineage) -> int:
    """How many steps a run with ``lineage`` inherits (its progress starts there)."""
    if not lineage:
        return 0
    stmt = select(func.count()).select_from(Step).where(inherited(Step, lineage))
    return int(s.scalar(stmt) or 0)


_STEP_COLUMNS = tuple(attr.key for attr in inspect(Step).column_attrs)


def as_seen_by(run_id: str, rows: Iterable[Step]) -> list[Step]:
    """Steps as the run shows them: an inherited row is shown as the run's own step.

    It keeps its id (unique among the steps the run sees, and ordered by creation like any
    step id); only ``run_id`` names the run that sees it. The row in the session is left
    as it is: a detached copy carries the change, so no flush ever writes it.
    """
    out: list[Step] = []
    for row in rows:
        if row.run_id == run_id:
            out.append(row)
        else:
            copy = Step(**{key: getattr(row, key) for key in _STEP_COLUMNS})
            copy.run_id = run_id
            out.append(copy)
    return out


def turns_seen_by(s: Session, run: Run) -> list[Turn]:
    """The run's turns in order, inherited ones included (read only)."""
    stmt = select(Turn).where(seen_by(Turn, run)).order_by(Turn.turn_index)
    return list(s.scalars(stmt))


def steps_page(s: Session, run: Run, page: PageRequest) -> Page[Step]:
    """One page of the steps the run sees, inherited ones shown as its own."""
    found = paginate(s, select(Step).where(seen_by(Step, run)), Step, page)
    return replace(found, items=as_seen_by(run.id, found.items))
