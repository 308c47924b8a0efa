"""stored events and executions in the wire vocabulary

Steps in stored ``steps`` events name their lifecycle ``status`` (was ``state``), as the API
does; a block execution's ``available_iterations`` are ``{"step_id", "iteration"}`` objects
(were bare step ids). Rows written before are rewritten so that streams replaying old
events and old executions read like new ones.

Revision ID: 0006_wire_vocabulary
Revises: 0005_tenants
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006_wire_vocabulary"
down_revision: str | Sequence[str] | None = "0005_tenants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TURN = re.compile(r"^t\d+$")


def _rename_step_key(old: str, new: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            UPDATE run_events SET data = jsonb_set(data, '{{steps}}', (
                SELECT jsonb_agg((s - '{old}') || jsonb_build_object('{new}', s -> '{old}'))
                FROM jsonb_array_elements(data -> 'steps') AS s))
            WHERE kind = 'steps' AND (data -> 'steps' -> 0) ? '{old}'
            """
        )
        return
    op.execute(
        f"""
        UPDATE run_events SET data = json_set(data, '$.steps', (
            SELECT json_group_array(json_remove(
                json_set(value, '$.{new}', json_extract(value, '$.{old}')), '$.{old}'))
            FROM json_each(run_events.data, '$.steps')))
        WHERE kind = 'steps' AND json_type(data, '$.steps[0].{old}') IS NOT NULL
        """
    )


def _iteration(step_id: str) -> str | None:
    # step ids are [t<turn>/][<for_each scope>/]<block>[~visit]
    parts = step_id.split("/")
    if len(parts) > 1 and _TURN.match(parts[0]):
        parts = parts[1:]
    return "/".join(parts[:-1]) or None


def _rewrite_iterations(convert: Any) -> None:
    table = sa.table(
        "block_executions", sa.column("id", sa.String), sa.column("available_iterations", sa.JSON)
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(table.c.id, table.c.available_iterations).where(
            table.c.available_iterations.is_not(None)
        )
    ).all()
    for row in rows:
        value = row.available_iterations
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, list):
            continue
        new = [convert(it) for it in value]
        if new != value:
            bind.execute(
                table.update().where(table.c.id == row.id).values(available_iterations=new)
            )


def upgrade() -> None:
    _rename_step_key("state", "status")
    _rewrite_iterations(
        lambda it: {"step_id": it, "iteration": _iteration(it)} if isinstance(it, str) else it
    )


def downgrade() -> None:
    _rename_step_key("status", "state")
    _rewrite_iterations(lambda it: it["step_id"] if isinstance(it, dict) else it)
