"""Rows as stored before migration 0006 (events keyed ``state``, iterations as bare ids),
and the check that the migration rewrites them to the wire vocabulary and back."""

from __future__ import annotations

import json
from typing import Any

from alembic import command
from sqlalchemy import text

from engine.db import migrate
from engine.db.session import make_engine

ORG, WF, RUN, EX = ("a" * 24, "b" * 24, "c" * 24, "d" * 24)
OLD_STEP = {"id": "e" * 24, "step_id": "t1/pages[2]/f~2", "state": "skipped", "reason": "x"}
OLD_ITERATIONS = ["pages[0]/f", "t1/a[1]/pages[2]/f~2", "f"]
NEW_ITERATIONS = [
    {"step_id": "pages[0]/f", "iteration": "pages[0]"},
    {"step_id": "t1/a[1]/pages[2]/f~2", "iteration": "a[1]/pages[2]"},
    {"step_id": "f", "iteration": None},
]


def _seed(url: str) -> None:
    engine = make_engine(url, pool_size=1)
    now = "2026-01-01 00:00:00"
    try:
        with engine.begin() as c:
            c.execute(
                text("INSERT INTO organizations (id, name, created_at) VALUES (:o, 'o', :t)"),
                {"o": ORG, "t": now},
            )
            c.execute(
                text(
                    "INSERT INTO workflows (id, organization_id, name, draft, settings,"
                    " latest_version, created_at, updated_at)"
                    " VALUES (:w, :o, 'w', '{}', '{}', 0, :t, :t)"
                ),
                {"w": WF, "o": ORG, "t": now},
            )
            c.execute(
                text(
                    "INSERT INTO runs (id, organization_id, workflow_id, status, config,"
                    " metadata, is_evaluation, current_turn, steps_total, steps_done, usage,"
                    " created_at, updated_at)"
                    " VALUES (:r, :o, :w, 'completed', '{}', '{}', false, 0, 0, 0, '[]', :t, :t)"
                ),
                {"r": RUN, "o": ORG, "w": WF, "t": now},
            )
            c.execute(
                text(
                    "INSERT INTO block_executions (id, organization_id, workflow_id, run_id,"
                    " block_id, block_type, available_iterations, block_config, inputs,"
                    " n_consensus, open_children, state, attempt, created_at)"
                    " VALUES (:x, :o, :w, :r, 'f', 'function', :its, '{}', '{}', 1, 0,"
                    " 'completed', 1, :t)"
                ),
                {"x": EX, "o": ORG, "w": WF, "r": RUN, "t": now, "its": json.dumps(OLD_ITERATIONS)},
            )
            for kind, data in (
                ("steps", {"steps": [OLD_STEP, {**OLD_STEP, "state": "completed"}], "at": "t"}),
                ("run", {"run_id": RUN, "status": "completed", "at": "t"}),
            ):
                c.execute(
                    text(
                        "INSERT INTO run_events (run_id, kind, data, created_at)"
                        " VALUES (:r, :k, :d, :t)"
                    ),
                    {"r": RUN, "k": kind, "d": json.dumps(data), "t": now},
                )
    finally:
        engine.dispose()


def _read(url: str) -> tuple[list[dict[str, Any]], Any]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as c:
            events = [
                d if isinstance(d, dict) else json.loads(d)
                for d in c.execute(text("SELECT data FROM run_events ORDER BY seq")).scalars()
            ]
            its = c.execute(
                text("SELECT available_iterations FROM block_executions WHERE id = :x"), {"x": EX}
            ).scalar()
            return events, its if not isinstance(its, str) else json.loads(its)
    finally:
        engine.dispose()


def check_migration_0006(url: str) -> None:
    migrate.upgrade(url, "0004")
    _seed(url)
    migrate.upgrade(url)
    events, its = _read(url)
    steps = events[0]["steps"]
    assert [s.get("status") for s in steps] == ["skipped", "completed"], steps
    assert all("state" not in s for s in steps)
    assert steps[0] == {**{k: v for k, v in OLD_STEP.items() if k != "state"}, "status": "skipped"}
    assert events[1] == {"run_id": RUN, "status": "completed", "at": "t"}
    assert its == NEW_ITERATIONS
    command.downgrade(migrate.alembic_config(url), "0004")
    events, its = _read(url)
    assert [s.get("state") for s in events[0]["steps"]] == ["skipped", "completed"]
    assert its == OLD_ITERATIONS
