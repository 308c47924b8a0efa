"""heartbeat leases on running rows

A claim leases its row to the worker until ``leased_until``; the worker's heartbeat pushes
it ahead while it works on the row, and a running row past it is taken over (see
``engine.leases``). Rows claimed before this revision have none: their lease counts from
``started_at``, as before.

Revision ID: 0007_leases
Revises: 0006_wire_vocabulary
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_leases"
down_revision: str | Sequence[str] | None = "0006_wire_vocabulary"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("steps", "block_executions", "consensus_attempts")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("leased_until")
