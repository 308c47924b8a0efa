"""idempotency fingerprints, comment authors from their key, run storage accounting

An idempotency record now commits with the work it guards and remembers a fingerprint of
the request (method, path, body): a key reused with another body answers 422. In-progress
placeholders of the old protocol are deleted (their requests are long gone).

A comment's ``author`` is the key that wrote it; the free text a client sent moves to
``display_name``. Comments written before this cannot be traced to a key: their author
reads ``unverified``.

``runs.stored_bytes`` counts what a run's steps store (limited by
``QUORUM_MAX_RUN_STORED_BYTES``); ``ix_runs_org_status`` counts an organization's active
runs (``QUORUM_MAX_ACTIVE_RUNS_PER_ORG``).

Revision ID: 0005_tenants
Revises: 0004
Create Date: 2026-12-07 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_tenants"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
    op.execute("DELETE FROM idempotency_records WHERE status = 0")
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_name", sa.String(length=200), nullable=True))
    op.execute("UPDATE comments SET display_name = author, author = 'unverified'")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stored_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.create_index("ix_runs_org_status", ["organization_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_org_status")
        batch_op.drop_column("stored_bytes")
    op.execute("UPDATE comments SET author = COALESCE(display_name, author)")
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.drop_column("display_name")
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.drop_column("fingerprint")
