"""consensus rows are samples

"attempt" names one thing, the fencing counter of a claim: the rows a consensus block
fans out are its samples. ``consensus_attempts`` becomes ``consensus_samples`` (data kept,
columns unchanged); its open-state index is re-created under the new name, since SQLite
cannot rename an index.

Revision ID: 0010_samples
Revises: 0009_lineage
Create Date: 2026-12-07 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_samples"
down_revision: str | Sequence[str] | None = "0009_lineage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("state IN ('pending', 'queued', 'running')")


def _rename(old: str, new: str) -> None:
    op.drop_index(f"ix_{old}_open_state", table_name=old)
    op.rename_table(old, new)
    op.create_index(
        f"ix_{new}_open_state",
        new,
        ["state", "queued_at"],
        unique=False,
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )


def upgrade() -> None:
    _rename("consensus_attempts", "consensus_samples")


def downgrade() -> None:
    _rename("consensus_samples", "consensus_attempts")
