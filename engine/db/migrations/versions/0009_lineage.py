"""checkpoint runs read their parent's turns instead of copying them

``runs.lineage`` lists the ancestors whose earlier turns a checkpoint run sees (see
``engine.lineage``). Checkpoint runs made before this revision have none: they hold
copies of their parent's turns and keep reading those.

Revision ID: 0009_lineage
Revises: 0008_counters
Create Date: 2026-12-07 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_lineage"
down_revision: str | Sequence[str] | None = "0008_counters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column(
                "lineage",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lineage")
