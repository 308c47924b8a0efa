"""partial indexes on open states

The outbox and the orphan sweep only ever look for pending, queued and running rows, and
those are few next to the rows that ended. Indexing only them keeps the index small, and a
copy of ended rows (a checkpoint fork copies thousands of completed steps) no longer
writes an entry per row into it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 13:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("steps", "block_executions", "consensus_attempts")
OPEN = sa.text("state IN ('pending', 'queued', 'running')")


def upgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_state_queued", table_name=table)
        op.create_index(
            f"ix_{table}_open_state",
            table,
            ["state", "queued_at"],
            unique=False,
            postgresql_where=OPEN,
            sqlite_where=OPEN,
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_open_state", table_name=table)
        op.create_index(f"ix_{table}_state_queued", table, ["state", "queued_at"], unique=False)
