"""Reading the chaos run's outcome from the database once the faults stopped."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError

from engine.db.models import BlockExecution, Run, Step
from tests.chaos.units import Unit

OPEN_STEP = ("pending", "queued", "running")
OPEN_RUN = ("not_started", "started", "running")


@dataclass(frozen=True, kw_only=True)
class Outcome:
    completed: int
    errored: int
    lost: int
    duplicates_terminal: int
    duplicates_by_key: int
    reexecuted: int


def _ids(units: Sequence[Unit], ids: dict[str, str], *kinds: str) -> list[str]:
    return [ids[u.key] for u in units if u.kind in kinds and u.key in ids]


def open_units(engine: Engine, units: Sequence[Unit], ids: dict[str, str]) -> int:
    executions = _ids(units, ids, "execution", "consensus")
    runs = _ids(units, ids, "chain", "for_each")
    with engine.connect() as conn:
        open_ex = conn.scalar(
            select(func.count())
            .select_from(BlockExecution)
            .where(BlockExecution.id.in_(executions), BlockExecution.state.in_(OPEN_STEP))
        )
        open_runs = conn.scalar(
            select(func.count()).select_from(Run).where(Run.id.in_(runs), Run.status.in_(OPEN_RUN))
        )
    return int(open_ex or 0) + int(open_runs or 0)


def wait_until_done(
    engine: Engine, units: Sequence[Unit], ids: dict[str, str], *, deadline: float
) -> None:
    while time.monotonic() < deadline:
        try:
            if open_units(engine, units, ids) == 0:
                return
        except OperationalError:  # PostgreSQL restarting
            pass
        time.sleep(1.0)


def outcome(
    engine: Engine, units: Sequence[Unit], ids: dict[str, str], sources: dict[str, str]
) -> Outcome:
    executions = _ids(units, ids, "execution", "consensus")
    runs = _ids(units, ids, "chain", "for_each")
    with engine.connect() as conn:
        ex_states = Counter(
            dict(
                conn.execute(
                    select(BlockExecution.state, func.count())
                    .where(BlockExecution.id.in_(executions))
                    .group_by(BlockExecution.state)
                ).all()
            )
        )
        run_states = Counter(
            dict(
                conn.execute(
                    select(Run.status, func.count()).where(Run.id.in_(runs)).group_by(Run.status)
                ).all()
            )
        )
        completed = ex_states["completed"] + run_states["completed"]
        errored = ex_states["error"] + ex_states["cancelled"] + run_states["failed"]
        dup_steps = conn.scalar(
            select(func.count()).select_from(
                select(Step.run_id, Step.step_id)
                .group_by(Step.run_id, Step.step_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
        return Outcome(
            completed=completed,
            errored=errored,
            lost=len(executions) + len(runs) - completed - errored,
            duplicates_terminal=int(dup_steps or 0),
            duplicates_by_key=_duplicates_by_key(conn, units, sources),
            reexecuted=_reexecuted(conn),
        )


def _duplicates_by_key(conn: Any, units: Sequence[Unit], sources: dict[str, str]) -> int:
    """Units created more than once for one Idempotency-Key."""
    # Runs carry their key in their metadata.
    extra_runs = conn.scalar(
        text(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM runs "
            "WHERE metadata ->> 'chaos_key' IS NOT NULL "
            "GROUP BY metadata ->> 'chaos_key') AS per_key"
        )
    )
    # Executions do not: every execution of the source runs beyond one per key is one.
    extra_executions = 0
    for kinds, run_id in (
        (("execution",), sources["execution"]),
        (("consensus",), sources["consensus"]),
    ):
        made = conn.scalar(
            select(func.count()).select_from(BlockExecution).where(BlockExecution.run_id == run_id)
        )
        extra_executions += int(made or 0) - sum(1 for u in units if u.kind in kinds)
    return int(extra_runs or 0) + max(0, extra_executions)


def _reexecuted(conn: Any) -> int:
    """Units whose user code ran more than once (a value recorded twice for one block)."""
    return int(
        conn.scalar(
            text(
                "SELECT count(DISTINCT split_part(value, ':', 1)) FROM ("
                "  SELECT value FROM chaos_calls WHERE block <> 'source'"
                "  GROUP BY value, block HAVING count(*) > 1) AS twice"
            )
        )
        or 0
    )


def stuck(engine: Engine, units: Sequence[Unit], ids: dict[str, str]) -> list[str]:
    """What unfinished units look like, to tell a lost message from a stuck claim."""
    executions = _ids(units, ids, "execution", "consensus")
    runs = _ids(units, ids, "chain", "for_each")
    cols = ("id", "state", "attempt", "worker", "queued_at", "started_at", "leased_until")
    with engine.connect() as conn:
        ex = conn.execute(
            select(*(getattr(BlockExecution, c) for c in cols)).where(
                BlockExecution.id.in_(executions), BlockExecution.state.in_(OPEN_STEP)
            )
        ).all()
        steps = conn.execute(
            select(Step.step_id, *(getattr(Step, c) for c in cols))
            .join(Run, Run.id == Step.run_id)
            .where(Run.id.in_(runs), Step.state.in_(OPEN_STEP))
        ).all()
    return [f"execution {tuple(r)}" for r in ex] + [f"step {tuple(r)}" for r in steps]
