"""The stale run reaper: a started or running run with no progress for too long is failed.

Progress is ``runs.updated_at``, touched whenever a step of the run settles. Runs that
wait on purpose (``paused``, ``waiting_for_user_input``) are never reaped. Each run is
re-checked under its row lock, so two reapers at once fail it once.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from engine import handoff
from engine.clock import as_utc, utcnow
from engine.db.models import Run
from engine.db.session import Database, lock_row
from engine.lifecycle import RunStatus, TerminationReason
from engine.ports import Dispatcher, Work
from engine.run.ended import terminate_run

MIN_STALE_S = 1.0


def stale_limit(run: Run, default_after_s: float) -> float:
    settings = (run.config or {}).get("settings") or {}
    value = settings.get("stale_after_s", default_after_s)
    return max(MIN_STALE_S, float(value)) if isinstance(value, int | float) else default_after_s


def reap(db: Database, dispatcher: Dispatcher, *, default_after_s: float, batch: int = 200) -> int:
    now = utcnow()
    active = [RunStatus.STARTED, RunStatus.RUNNING]
    with db.transaction() as s:
        candidates = (
            s.execute(
                select(Run.id)
                .where(
                    Run.status.in_(active), Run.updated_at < now - timedelta(seconds=MIN_STALE_S)
                )
                .order_by(Run.updated_at)
                .limit(batch)
            )
            .scalars()
            .all()
        )
    reaped = 0
    revoke: list[Work] = []
    for run_id in candidates:
        with db.transaction() as s:
            run = lock_row(s, Run, run_id)
            if run is None or run.status not in active:
                continue
            idle = (now - (as_utc(run.updated_at) or now)).total_seconds()
            if idle <= stale_limit(run, default_after_s):
                continue
            ended = terminate_run(
                s,
                run,
                RunStatus.FAILED,
                TerminationReason.STALE_RUN_REAPER,
                now=now,
                error={"type": "stale_run", "message": f"no progress for {int(idle)} s"},
            )
            if ended is not None:
                reaped += 1
                revoke.extend(ended)
    handoff.revoke(dispatcher, revoke)
    return reaped
