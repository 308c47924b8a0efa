"""The relational model (SQLAlchemy 2 typed ORM).

Steps and block executions share one lifecycle layout (:class:`LifecycleColumns`) so the
same compare-and-set code, claim and fencing logic serves both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.clock import utcnow
from engine.ids import new_id

Json = JSON().with_variant(JSONB(), "postgresql")
Id = String(24)
# The outbox and orphan sweeps look only for open rows: index only those (a checkpoint
# fork copies thousands of ended steps, and none of them lands in this index).
_OPEN = text("state IN ('pending', 'queued', 'running')")
_OPEN_ONLY: dict[str, Any] = {"postgresql_where": _OPEN, "sqlite_where": _OPEN}
Time = DateTime(timezone=True)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: Json, list[Any]: Json, Any: Json}


def _id_column() -> Mapped[str]:
    return mapped_column(Id, primary_key=True, default=new_id)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = _id_column()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(Time, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = _id_column()
    organization_id: Mapped[str] = mapped_column(Id, ForeignKey("organizations.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Time, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(Time)


class Workflow(Base):
    __tablename__ = "workflows"
    id: Mapped[str] = _id_column()
    organization_id: Mapped[str] = mapped_column(Id, ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    draft: Mapped[dict[str, Any]] = mapped_column(Json)
    settings: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Time, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Time, default=utcnow, onupdate=utcnow)
    __table_args__ = (Index("ix_workflows_org_id", "organization_id", "id"),)


class WorkflowVersion(Base):
    __tablename__ = "workflow_versions"
    id: Mapped[str] = _id_column()
    workflow_id: Mapped[str] = mapped_column(Id, ForeignKey("workflows.id"))
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(200))
    graph: Mapped[dict[str, Any]] = mapped_column(Json)
    settings: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(Time, default=utcnow)
    __table_args__ = (UniqueConstraint("workflow_id", "number"),)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = _id_column()
    organization_id: Mapped[str] = mapped_column(Id, ForeignKey("organizations.id"))
    workflow_id: Mapped[str] = mapped_column(Id, ForeignKey("workflows.id"))
    # None means the run executes a frozen copy of the draft.
    version: Mapped[int | None] = mapped_column(Integer)
    version_name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32), default="not_started")
    termination_reason: Mapped[str | None] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(Json)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", Json, default=dict)
    initiator: Mapped[str | None] = mapped_column(String(200))
    original_run_id: Mapped[str | None] = mapped_column(Id, ForeignKey("runs.id"))
    parent_turn_index: Mapped[int | None] = mapped_column(Integer)
    # The ancestors whose earlier turns a checkpoint run reads instead of copies of them
    # (engine.lineage); null for every other run.
    lineage: Mapped[list[Any] | None] = mapped_column(Json)
    is_evaluation: Mapped[bool] = mapped_column(Boolean, default=False)
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(Json)
    current_turn: Mapped[int] = mapped_column(Integer, default=0)
    steps_total: Mapped[int] = mapped_column(Integer, default=0)
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    # Bytes of step inputs and outputs stored so far (see engine.limits).
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    error: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # Model usage of this run's own calls, one entry per (provider, model): kept on the row
    # (updated under the run lock) so reading a run needs no aggregate query.
    usage: Mapped[list[Any]] = mapped_column(Json, default=list)
    created_at: Mapped[datetime] = mapped_column(Time, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Time, default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(Time)
    __table_args__ = (
        Index("ix_runs_org_id", "organization_id", "id"),
        Index("ix_runs_workflow", "workflow_id", "id"),
        Index("ix_runs_original", "original_run_id"),
        Index("ix_runs_status_updated", "status", "updated_at"),
        Index("ix_runs_org_status", "organization_id", "status"),
    )


class Turn(Base):
    """One contiguous execution segment of a run: its io pair."""

    __tablename__ = "turns"
    id: Mapped[str] = _id_column()
    run_id: Mapped[str] = mapped_column(Id, ForeignKey("runs.id"))
    turn_index: Mapped[int] = mapped_column(Integer)
    input: Mapped[Any] = mapped_column(Json, nullable=True)
    output: Mapped[Any] = mapped_column(Json, nullable=True)
    started_at: Mapped[datetime] = mapped_column(Time, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(Time)
    __table_args__ = (UniqueConstraint("run_id", "turn_index"),)


class LifecycleColumns:
    """Columns every dispatched unit of work carries (see ``engine.lifecycle.STEP``)."""

    state: Mapped[str] = mapped_column(String(16), default="pending")
    queued_at: Mapped[datetime | None] = mapped_column(Time)
    started_at: Mapped[datetime | None] = mapped_column(Time)
    completed_at: Mapped[datetime | None] = mapped_column(Time)
    worker: Mapped[str | None] = mapped_column(String(200))
    # Until when the holder is known to be working on the row: set by the claim, pushed
    # ahead by the holder's heartbeat (engine.leases); a running row past it is taken over.
    leased_until: Mapped[datetime | None] = mapped_column(Time)
    # Fencing token: bumped by every claim; only the current attempt may complete the row.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    error_type: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Time, default=utcnow)


class Step(LifecycleColumns, Base):
    __tablename__ = "steps"
    id: Mapped[str] = _id_column()
    run_id: Mapped[str] = mapped_column(Id, ForeignKey("runs.id"))
    turn_index: Mapped[int] = mapped_column(Integer, default=0)
    # Path of the step: "[t<turn>/][<for_each>[<i>]/]<block>[~<visit>]", unique in the run.
    step_id: Mapped[str] = mapped_column(String(400))
    # The for_each iteration path this step runs in ("" at top level), e.g. "pages[2]".
    scope: Mapped[str] = mapped_column(String(400), default="")
    block_id: Mapped[str] = mapped_column(String(64))
    block_type: Mapped[str] = mapped_column(String(32))
    visit: Mapped[int] = mapped_column(Integer, default=1)
    inputs: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(Json)
    active_output_handles: Mapped[list[Any] | None] = mapped_column(Json)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    n_consensus: Mapped[int] = mapped_column(Integer, default=1)
    consensus: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # Children still open: consensus samples or for_each iterations (a join counter).
    open_children: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (
        UniqueConstraint("run_id", "step_id"),
        Index("ix_steps_run_scope_block", "run_id", "turn_index", "scope", "block_id"),
        Index("ix_steps_open_state", "state", "queued_at", **_OPEN_ONLY),
    )


class BlockExecution(LifecycleColumns, Base):
    __tablename__ = "block_executions"
    id: Mapped[str] = _id_column()
    organization_id: Mapped[str] = mapped_column(Id, ForeignKey("organizations.id"))
    workflow_id: Mapped[str] = mapped_column(Id, ForeignKey("workflows.id"))
    run_id: Mapped[str] = mapped_column(Id, ForeignKey("runs.id"))
    block_id: Mapped[str] = mapped_column(String(64))
    block_type: Mapped[str] = mapped_column(String(32))
    workflow_version: Mapped[int | None] = mapped_column(Integer)
    step_id: Mapped[str | None] = mapped_column(String(400))
    available_iterations: Mapped[list[Any] | None] = mapped_column(Json)
    block_config: Mapped[dict[str, Any]] = mapped_column(Json)
    inputs: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(Json)
    artifact: Mapped[dict[str, Any] | None] = mapped_column(Json)
    active_output_handles: Mapped[list[Any] | None] = mapped_column(Json)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    n_consensus: Mapped[int] = mapped_column(Integer, default=1)
    consensus: Mapped[dict[str, Any] | None] = mapped_column(Json)
    open_children: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (
        Index("ix_block_executions_org_id", "organization_id", "id"),
        Index("ix_block_executions_run_block", "run_id", "block_id"),
        Index("ix_block_executions_open_state", "state", "queued_at", **_OPEN_ONLY),
    )


class ConsensusSample(LifecycleColumns, Base):
    """One of the ``n_consensus`` parallel model calls of a step or a block execution."""

    __tablename__ = "consensus_samples"
    id: Mapped[str] = _id_column()
    owner_kind: Mapped[str] = mapped_column(String(16))  # "step" | "execution"
    owner_id: Mapped[str] = mapped_column(Id)
    # The owner's claim (its attempt) this sample belongs to; samples of a superseded claim
    # are ignored.
    owner_attempt: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column(Integer)
    output: Mapped[Any] = mapped_column(Json, nullable=True)
    __table_args__ = (
        UniqueConstraint("owner_kind", "owner_id", "owner_attempt", "index"),
        Index("ix_consensus_samples_open_state", "state", "queued_at", **_OPEN_ONLY),
    )


class ModelCall(Base):
    """Usage record of one model call (tokens, latency)."""

    __tablename__ = "model_calls"
    id: Mapped[str] = _id_column()
    organization_id: Mapped[str] = mapped_column(Id, ForeignKey("organizations.id"))
    run_id: Mapped[str | None] = mapped_column(Id)
    turn_index: Mapped[int | None] = mapped_column(Integer)
    step_id: Mapped[str | None] = mapped_column(Id)
    execution_id: Mapped[str | None] = mapped_column(Id)
    provider: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Time, default=utcnow)
    __table_args__ = (
        Index("ix_model_calls_run", "run_id"),
        Index("ix_model_calls_execution", "execution_id"),
    )


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[str] = _id_column()
    run_id: Mapped[str] = mapped_column(Id, ForeignKey("runs.id"), index=True)
    # The prefix of the API key that wrote it; ``display_name`` is whatever the client said.
    author: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Time, default=utcnow)


class RunEvent(Base):
    """A run's lifecycle changes, in commit order: the stream behind SSE (``Last-Event-ID``).

    Written in the same transaction as the change it describes, so a listener never sees
    an event for a change that was rolled back, nor misses one that was committed.
    """

    __tablename__ = "run_events"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(Id)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(Time, default=utcnow)
    __table_args__ = (Index("ix_run_events_run_seq", "run_id", "seq"),)


class IdempotencyRecord(Base):
    """First answer to a POST carrying an ``Idempotency-Key``, replayed on repeats."""

    __tablename__ = "idempotency_records"
    organization_id: Mapped[str] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(400))
    # SHA-256 of method, path and body (null: recorded before fingerprints existed).
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[Any] = mapped_column(Json, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Time, default=utcnow)


class EngineCounter(Base):
    """A fleet-wide event counter (engine.counters), bumped in the event's own transaction.

    In the database, not in a process, so every process adds to one total and the API
    reads it (``quorum_*_total`` on ``/metrics``) no matter which worker counted.
    """

    __tablename__ = "engine_counters"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    # The label set, canonical ("reason=stale_run_reaper"; "" for none): part of the key.
    labels: Mapped[str] = mapped_column(String(400), primary_key=True, default="")
    value: Mapped[int] = mapped_column(BigInteger, default=0)
