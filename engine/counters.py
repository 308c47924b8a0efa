"""Fleet-wide event counters in the database (``engine_counters``).

A worker's in-memory counter dies with its process and counts only that process; the
events the API exports as ``quorum_*_total`` (run terminations, outbox re-publishes)
happen in workers, beat and the CLI alike. Each is bumped by one upsert inside the
transaction that makes the event happen, so a rolled-back event is not counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.db.models import EngineCounter

RUN_TERMINATIONS = "run_terminations"
OUTBOX_REPUBLISHED = "outbox_republished"


@dataclass(frozen=True, kw_only=True)
class CounterValue:
    name: str
    labels: Mapping[str, str]
    value: int


def encode_labels(labels: Mapping[str, str]) -> str:
    """The canonical key of a label set: sorted ``k=v`` pairs joined by commas."""
    for key, value in labels.items():
        if any(c in f"{key}{value}" for c in ",="):
            raise ValueError(f"label {key}={value!r} may not hold ',' or '='")
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def decode_labels(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split(",")) if text else {}


def increment(session: Session, name: str, by: int = 1, **labels: str) -> None:
    """Add ``by`` to the counter, creating it at ``by``: one statement on either database."""
    if by <= 0:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(EngineCounter).values(name=name, labels=encode_labels(labels), value=by)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[EngineCounter.name, EngineCounter.labels],
            set_={"value": EngineCounter.value + stmt.excluded.value},
        )
    )


def read_counters(session: Session) -> list[CounterValue]:
    rows = session.execute(
        select(EngineCounter.name, EngineCounter.labels, EngineCounter.value).order_by(
            EngineCounter.name, EngineCounter.labels
        )
    ).all()
    return [
        CounterValue(name=r.name, labels=decode_labels(r.labels), value=int(r.value)) for r in rows
    ]
