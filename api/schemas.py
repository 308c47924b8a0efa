"""Request bodies and query strings, validated at the edge with pydantic."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ObjectId = Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
BlockId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowSettings(Strict):
    max_block_visits: int = Field(10, ge=1, le=1000)
    stale_after_s: float | None = Field(None, ge=1, le=7 * 24 * 3600)
    evaluation_workflow_id: ObjectId | None = None


class GraphBody(Strict):
    blocks: list[dict[str, Any]]
    edges: list[dict[str, Any]] = Field(default_factory=list)


class CreateWorkflow(GraphBody):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    settings: WorkflowSettings | None = None


class ReplaceDraft(GraphBody):
    settings: WorkflowSettings | None = None


class PatchBlock(Strict):
    name: str | None = Field(None, max_length=200)
    config: dict[str, Any] | None = None


class PublishVersion(Strict):
    name: str | None = Field(None, max_length=200)


class CreateRun(Strict):
    workflow_id: ObjectId
    inputs: dict[str, Any] = Field(default_factory=dict)
    version: Annotated[int, Field(ge=0, le=2**31 - 1)] | Literal["draft"] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    initiator: str | None = Field(None, max_length=200)


class RunInput(Strict):
    input: Any


class CheckpointBody(Strict):
    resume_turn_index: int = Field(ge=0, le=2**31 - 1)
    input: Any = None


class CommentBody(Strict):
    text: str = Field(min_length=1, max_length=10_000)
    author: str | None = Field(None, min_length=1, max_length=200)


class CreateExecution(Strict):
    run_id: ObjectId
    block_id: BlockId
    step_id: str | None = Field(None, min_length=1, max_length=400)
    n_consensus: int | None = None
    verify_upstream: bool = True


class PageQuery(Strict):
    limit: int = Field(50, ge=1, le=200)
    after: ObjectId | None = None


class RunsQuery(PageQuery):
    workflow_id: ObjectId | None = None
    status: (
        Literal[
            "not_started",
            "started",
            "running",
            "waiting_for_user_input",
            "paused",
            "completed",
            "failed",
            "cancelled",
            "aborted_looping_risk",
        ]
        | None
    ) = None
    original_run_id: ObjectId | None = None


class ExecutionsQuery(PageQuery):
    run_id: ObjectId | None = None
    block_id: BlockId | None = None


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class ListPage(BaseModel):
    data: list[dict[str, Any]]
    has_more: bool
    next_after: str | None
