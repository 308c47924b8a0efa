"""Initial schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 10:25:01.316592
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The models' ``Json`` type: JSONB on PostgreSQL, JSON (text) on SQLite.
JSON_VARIANT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "consensus_attempts",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("owner_kind", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=24), nullable=False),
        sa.Column("owner_attempt", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("output", JSON_VARIANT, nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(length=200), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_kind", "owner_id", "owner_attempt", "index"),
    )
    with op.batch_alter_table("consensus_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consensus_attempts_state_queued", ["state", "queued_at"], unique=False
        )

    op.create_table(
        "idempotency_records",
        sa.Column("organization_id", sa.String(length=24), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=400), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", JSON_VARIANT, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "key"),
    )
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("organization_id", sa.String(length=24), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prefix"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_keys_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "model_calls",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("organization_id", sa.String(length=24), nullable=False),
        sa.Column("run_id", sa.String(length=24), nullable=True),
        sa.Column("turn_index", sa.Integer(), nullable=True),
        sa.Column("step_id", sa.String(length=24), nullable=True),
        sa.Column("execution_id", sa.String(length=24), nullable=True),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.create_index("ix_model_calls_execution", ["execution_id"], unique=False)
        batch_op.create_index("ix_model_calls_run", ["run_id"], unique=False)

    op.create_table(
        "workflows",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("organization_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("draft", JSON_VARIANT, nullable=False),
        sa.Column("settings", JSON_VARIANT, nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("workflows", schema=None) as batch_op:
        batch_op.create_index("ix_workflows_org_id", ["organization_id", "id"], unique=False)

    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("organization_id", sa.String(length=24), nullable=False),
        sa.Column("workflow_id", sa.String(length=24), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("version_name", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("termination_reason", sa.String(length=32), nullable=True),
        sa.Column("config", JSON_VARIANT, nullable=False),
        sa.Column("metadata", JSON_VARIANT, nullable=False),
        sa.Column("initiator", sa.String(length=200), nullable=True),
        sa.Column("original_run_id", sa.String(length=24), nullable=True),
        sa.Column("parent_turn_index", sa.Integer(), nullable=True),
        sa.Column("is_evaluation", sa.Boolean(), nullable=False),
        sa.Column("evaluation", JSON_VARIANT, nullable=True),
        sa.Column("current_turn", sa.Integer(), nullable=False),
        sa.Column("steps_total", sa.Integer(), nullable=False),
        sa.Column("steps_done", sa.Integer(), nullable=False),
        sa.Column("error", JSON_VARIANT, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["original_run_id"],
            ["runs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_org_id", ["organization_id", "id"], unique=False)
        batch_op.create_index("ix_runs_original", ["original_run_id"], unique=False)
        batch_op.create_index("ix_runs_status_updated", ["status", "updated_at"], unique=False)
        batch_op.create_index("ix_runs_workflow", ["workflow_id", "id"], unique=False)

    op.create_table(
        "workflow_versions",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workflow_id", sa.String(length=24), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("graph", JSON_VARIANT, nullable=False),
        sa.Column("settings", JSON_VARIANT, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow_id", "number"),
    )
    op.create_table(
        "block_executions",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("organization_id", sa.String(length=24), nullable=False),
        sa.Column("workflow_id", sa.String(length=24), nullable=False),
        sa.Column("run_id", sa.String(length=24), nullable=False),
        sa.Column("block_id", sa.String(length=64), nullable=False),
        sa.Column("block_type", sa.String(length=32), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=True),
        sa.Column("step_id", sa.String(length=400), nullable=True),
        sa.Column("available_iterations", JSON_VARIANT, nullable=True),
        sa.Column("block_config", JSON_VARIANT, nullable=False),
        sa.Column("inputs", JSON_VARIANT, nullable=False),
        sa.Column("outputs", JSON_VARIANT, nullable=True),
        sa.Column("artifact", JSON_VARIANT, nullable=True),
        sa.Column("active_output_handles", JSON_VARIANT, nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("n_consensus", sa.Integer(), nullable=False),
        sa.Column("consensus", JSON_VARIANT, nullable=True),
        sa.Column("open_children", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(length=200), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("block_executions", schema=None) as batch_op:
        batch_op.create_index("ix_block_executions_org_id", ["organization_id", "id"], unique=False)
        batch_op.create_index("ix_block_executions_run_block", ["run_id", "block_id"], unique=False)
        batch_op.create_index(
            "ix_block_executions_state_queued", ["state", "queued_at"], unique=False
        )

    op.create_table(
        "comments",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("run_id", sa.String(length=24), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_comments_run_id"), ["run_id"], unique=False)

    op.create_table(
        "steps",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("run_id", sa.String(length=24), nullable=False),
        sa.Column("turn_index", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=400), nullable=False),
        sa.Column("scope", sa.String(length=400), nullable=False),
        sa.Column("block_id", sa.String(length=64), nullable=False),
        sa.Column("block_type", sa.String(length=32), nullable=False),
        sa.Column("visit", sa.Integer(), nullable=False),
        sa.Column("inputs", JSON_VARIANT, nullable=False),
        sa.Column("outputs", JSON_VARIANT, nullable=True),
        sa.Column("active_output_handles", JSON_VARIANT, nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("n_consensus", sa.Integer(), nullable=False),
        sa.Column("consensus", JSON_VARIANT, nullable=True),
        sa.Column("open_children", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(length=200), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "step_id"),
    )
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.create_index(
            "ix_steps_run_scope_block", ["run_id", "turn_index", "scope", "block_id"], unique=False
        )
        batch_op.create_index("ix_steps_state_queued", ["state", "queued_at"], unique=False)

    op.create_table(
        "turns",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("run_id", sa.String(length=24), nullable=False),
        sa.Column("turn_index", sa.Integer(), nullable=False),
        sa.Column("input", JSON_VARIANT, nullable=True),
        sa.Column("output", JSON_VARIANT, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "turn_index"),
    )


def downgrade() -> None:
    op.drop_table("turns")
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_index("ix_steps_state_queued")
        batch_op.drop_index("ix_steps_run_scope_block")

    op.drop_table("steps")
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_comments_run_id"))

    op.drop_table("comments")
    with op.batch_alter_table("block_executions", schema=None) as batch_op:
        batch_op.drop_index("ix_block_executions_state_queued")
        batch_op.drop_index("ix_block_executions_run_block")
        batch_op.drop_index("ix_block_executions_org_id")

    op.drop_table("block_executions")
    op.drop_table("workflow_versions")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_workflow")
        batch_op.drop_index("ix_runs_status_updated")
        batch_op.drop_index("ix_runs_original")
        batch_op.drop_index("ix_runs_org_id")

    op.drop_table("runs")
    with op.batch_alter_table("workflows", schema=None) as batch_op:
        batch_op.drop_index("ix_workflows_org_id")

    op.drop_table("workflows")
    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_model_calls_run")
        batch_op.drop_index("ix_model_calls_execution")

    op.drop_table("model_calls")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_organization_id"))

    op.drop_table("api_keys")
    op.drop_table("organizations")
    op.drop_table("idempotency_records")
    with op.batch_alter_table("consensus_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_consensus_attempts_state_queued")

    op.drop_table("consensus_attempts")
