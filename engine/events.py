"""Run events: what changed in a run, stored with the change, streamed to listeners.

Rows are the truth and notifications only a nudge (as with the outbox): a listener reads
events after its last sequence number from the database, and a notification through the
:class:`EventBus` port only tells it to look now instead of at its next poll.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import String, bindparam, event, func, insert, literal, select, union_all
from sqlalchemy.orm import Session

from engine.clock import rfc3339, utcnow
from engine.db.models import Id, Json, Run, RunEvent, Step, Time
from engine.store.base import Store
from engine.store.dialects import store_for


class EventBus(Protocol):
    def notify(self, run_ids: Iterable[str]) -> None:
        """Tell listeners of these runs that new events are stored (best effort)."""
        ...

    def wait(self, run_id: str, timeout_s: float) -> None:
        """Return when a notification for ``run_id`` arrives, or after ``timeout_s``."""
        ...


class PollingBus:
    """No broker for notifications: listeners simply poll the table."""

    def notify(self, run_ids: Iterable[str]) -> None:
        return None

    def wait(self, run_id: str, timeout_s: float) -> None:
        import time

        time.sleep(min(timeout_s, 0.5))


def step_event(row: Step | Mapping[str, Any]) -> dict[str, Any]:
    get = row.get if isinstance(row, Mapping) else lambda k: getattr(row, k)
    return {
        "id": get("id"),
        "run_id": get("run_id"),
        "step_id": get("step_id"),
        "block_id": get("block_id"),
        "block_type": get("block_type"),
        "turn_index": get("turn_index"),
        "status": str(get("state")),
        "attempt": get("attempt"),
        "reason": get("reason"),
        "error_type": get("error_type"),
    }


def record(s: Session, run_id: str, kind: str, data: Mapping[str, Any]) -> None:
    record_many(s, [(run_id, kind, data)])


def record_many(s: Session, events: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
    if not events:
        return
    now = utcnow()
    s.execute(
        insert(RunEvent),
        [
            {
                "run_id": run_id,
                "kind": kind,
                "data": {**data, "at": rfc3339(now)},
                "created_at": now,
            }
            for run_id, kind, data in events
        ],
    )


def record_step_rows(s: Session, run_id: str, rows: Sequence[Step | Mapping[str, Any]]) -> None:
    """One ``steps`` event listing the steps' new states (a fan-out is one event)."""
    if rows:
        _pending(s).append((run_id, "steps", {"steps": [step_event(r) for r in rows]}))


def record_steps(s: Session, run_id: str, step_ids: Sequence[str]) -> None:
    """A ``steps`` event for these steps, as they stand when the transaction commits."""
    if step_ids:
        _pending(s).append((run_id, "steps", list(step_ids)))


def record_run(s: Session, run: Run) -> None:
    """A ``run`` event with the run's status and progress as they stand at commit."""
    _pending(s).append((run.id, "run", None))


# Events recorded in a transaction are written in one statement just before it commits
# (``install``), describing the rows in their final state; a run changed several times in
# one transaction gets one ``run`` event, since nobody could see the states in between.
_KEY = "quorum.pending_events"
Pending = tuple[str, str, Any]


def _pending(s: Session) -> list[Pending]:
    return s.info.setdefault(_KEY, [])


def install(factory: Any) -> None:
    """Write pending events before every commit of sessions made by ``factory``."""
    event.listen(factory, "before_commit", flush_events)
    event.listen(factory, "after_rollback", _discard)


def _discard(s: Session) -> None:
    s.info.pop(_KEY, None)
    s.info.pop(_COALESCE, None)


def coalesce_steps(s: Session) -> None:
    """Write this transaction's ``steps`` events as one snapshot and one final-state event
    per run: a batch of chain steps settles dozens of steps in one transaction, and one
    statement part per settle made a new, slow-to-compile statement for every batch size."""
    s.info[_COALESCE] = True


_COALESCE = "quorum.coalesce_steps"


def _coalesced(pending: list[Pending]) -> list[Pending]:
    # Per run, where its first steps event stood: the rows as created (snapshots, each
    # taken before the step moved on) first, then every step's final state.
    out: list[Pending] = []  # kind "": where a run's steps events go
    snapshots: dict[str, list[Any]] = {}
    ids: dict[str, list[str]] = {}
    for run_id, kind, data in pending:
        is_ids = kind == "steps" and isinstance(data, list)
        is_snapshot = kind == "steps" and isinstance(data, Mapping) and set(data) == {"steps"}
        if not (is_ids or is_snapshot):
            out.append((run_id, kind, data))
            continue
        if run_id not in snapshots:
            snapshots[run_id], ids[run_id] = [], []
            out.append((run_id, "", None))
        if is_ids:
            ids[run_id].extend(i for i in data if i not in ids[run_id])
        else:
            snapshots[run_id].extend(data["steps"])
    merged: list[Pending] = []
    for run_id, kind, data in out:
        if kind:
            merged.append((run_id, kind, data))
            continue
        if snapshots[run_id]:
            merged.append((run_id, "steps", {"steps": snapshots[run_id]}))
        if ids[run_id]:
            merged.append((run_id, "steps", ids[run_id]))
    return merged


def flush_events(s: Session) -> None:
    pending = s.info.pop(_KEY, None)
    if not pending:
        return
    if s.info.pop(_COALESCE, False):
        pending = _coalesced(pending)
    s.flush()
    now = utcnow()
    params: dict[str, Any] = {"at": rfc3339(now), "now": now}
    last_run_event = {r: i for i, (r, kind, _) in enumerate(pending) if kind == "run"}
    shape: list[str] = []
    for i, (run_id, kind, data) in enumerate(pending):
        if kind == "run" and last_run_event[run_id] != i:
            continue
        n = len(shape)
        params[f"run{n}"] = run_id
        if kind == "run":
            shape.append("run")
        elif isinstance(data, list):
            shape.append("ids")
            params[f"ids{n}"] = data
        else:
            shape.append(f"data:{kind}")
            params[f"data{n}"] = {**data, "at": params["at"]}
    # One statement for the whole transaction: the database reads the rows it describes
    # in their final state, and the statement (one per shape) is built and compiled once.
    s.execute(_insert_events(store_for(s), tuple(shape)), params)


@functools.lru_cache(maxsize=256)
def _insert_events(store: Store, shape: tuple[str, ...]) -> Any:
    parts: list[Any] = [_event_select(store, n, kind) for n, kind in enumerate(shape)]
    query: Any = parts[0]
    if len(parts) > 1:
        query = union_all(*parts)
    # The table, not the entity: with parameters, an ORM insert would be a bulk insert.
    table: Any = RunEvent.__table__
    return insert(table).from_select(["run_id", "kind", "data", "created_at"], query)


def _event_select(store: Store, n: int, kind: str) -> Any:
    obj = store.json_object
    at = bindparam("at", type_=String)
    run_id = bindparam(f"run{n}", type_=Id)
    now = bindparam("now", type_=Time)
    if kind == "run":
        progress = obj("steps_total", Run.steps_total, "steps_done", Run.steps_done)
        data = obj(
            *("run_id", Run.id, "status", Run.status),
            *("termination_reason", Run.termination_reason, "current_turn", Run.current_turn),
            *("progress", progress, "at", at),
        )
        return select(Run.id, literal("run"), data, now).where(Run.id == run_id)
    if kind == "ids":
        step = obj(*(x for key, c in _STEP_COLUMNS for x in (key, getattr(Step, c))))
        steps = store.json_array_agg(step)
        return (
            select(run_id, literal("steps"), obj("steps", steps, "at", at), now)
            .where(Step.id.in_(bindparam(f"ids{n}", expanding=True)))
            .having(func.count() > 0)
        )
    data_kind = kind.removeprefix("data:")
    return select(run_id, literal(data_kind), bindparam(f"data{n}", type_=Json), now)


# (key in the event, column): a step's state is its lifecycle ``status``, as in the API.
_STEP_COLUMNS = (
    ("id", "id"),
    ("run_id", "run_id"),
    ("step_id", "step_id"),
    ("block_id", "block_id"),
    ("block_type", "block_type"),
    ("turn_index", "turn_index"),
    ("status", "state"),
    ("attempt", "attempt"),
    ("reason", "reason"),
    ("error_type", "error_type"),
)


def since(s: Session, run_id: str, after: int, *, limit: int = 500) -> list[RunEvent]:
    return list(
        s.scalars(
            select(RunEvent)
            .where(RunEvent.run_id == run_id, RunEvent.seq > after)
            .order_by(RunEvent.seq)
            .limit(limit)
        )
    )
