"""fleet-wide event counters

``engine_counters`` holds the counters the API exports as ``quorum_*_total`` (run
terminations by reason, outbox re-publishes), each bumped by one upsert in the
transaction of the event it counts (see ``engine.counters``).

Revision ID: 0008_counters
Revises: 0007_leases
Create Date: 2026-12-07 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_counters"
down_revision: str | Sequence[str] | None = "0007_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "engine_counters",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("labels", sa.String(400), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "labels"),
    )


def downgrade() -> None:
    op.drop_table("engine_counters")
