"""The shapes of the API's answers, documented field by field in ``/openapi.json``.

They only document what ``api.views`` returns; the views build the answers, and the fuzz
and unit tests hold the two together.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel
from typing_extensions import TypedDict

from api.fields import (
    BlockId,
    Count,
    ObjectId,
    Resource,
    RunStatusName,
    TerminationReasonName,
    Time,
    VersionRef,
)


class ProblemError(Resource):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details; extension members (e.g. ``checks``) may follow."""

    type: str
    title: str
    status: Annotated[int, Field(ge=400, le=599)]
    detail: str
    errors: list[ProblemError] = Field(
        default_factory=list, description="for validation problems: one entry per bad field"
    )


class GraphBlock(Resource):
    id: BlockId
    type: str
    name: str | None
    config: dict[str, Any]


class GraphEdge(Resource):
    source: str
    source_handle: str
    target: str
    target_handle: str


class Graph(Resource):
    blocks: list[GraphBlock]
    edges: list[GraphEdge]


class StoredSettings(TypedDict, total=False):
    """A workflow's settings as stored: the keys that were set."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    max_block_visits: int
    stale_after_s: float
    evaluation_workflow_id: ObjectId


class RunConfig(Graph):
    """The hydrated graph a run executes, with the workflow settings it was started with."""

    settings: StoredSettings


class VersionSummary(Resource):
    number: Count
    name: str | None
    created_at: Time


class Workflow(Resource):
    id: ObjectId
    name: str
    description: str | None
    draft: Graph
    settings: StoredSettings
    latest_version: Count
    versions: list[VersionSummary]
    created_at: Time
    updated_at: Time


class WorkflowSummary(Resource):
    id: ObjectId
    name: str
    description: str | None
    latest_version: Count
    created_at: Time
    updated_at: Time


class Version(Resource):
    workflow_id: ObjectId
    number: Count
    name: str | None
    graph: Graph
    settings: StoredSettings
    created_at: Time


# Lifecycle of steps and block executions: a union tagged by ``status``.


class LifecyclePending(Resource):
    status: Literal["pending"]


class LifecycleQueued(Resource):
    status: Literal["queued"]
    queued_at: Time


class LifecycleRunning(Resource):
    status: Literal["running"]
    started_at: Time
    worker: str | None
    attempt: Count


class LifecycleCompleted(Resource):
    status: Literal["completed"]


class ErrorDetail(Resource):
    type: str
    message: str


class LifecycleError(Resource):
    status: Literal["error"]
    message: str = Field(description="human-readable: the error's message")
    error: ErrorDetail


class LifecycleCancelled(Resource):
    status: Literal["cancelled"]
    reason: str


class LifecycleSkipped(Resource):
    status: Literal["skipped"]
    reason: str


class Lifecycle(
    RootModel[
        Annotated[
            LifecyclePending
            | LifecycleQueued
            | LifecycleRunning
            | LifecycleCompleted
            | LifecycleError
            | LifecycleCancelled
            | LifecycleSkipped,
            Field(discriminator="status"),
        ]
    ]
):
    pass


class Step(Resource):
    id: ObjectId
    run_id: ObjectId
    step_id: str
    block_id: BlockId
    block_type: str
    turn_index: Count
    iteration: str | None
    visit: Annotated[int, Field(ge=1)]
    attempt: Count
    lifecycle: Lifecycle
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    active_output_handles: list[str] | None
    duration_ms: Count | None
    n_consensus: Annotated[int, Field(ge=1)]
    consensus: dict[str, Any] | None
    created_at: Time
    queued_at: Time | None = Field(description="last handed to the broker (moves on a retry)")
    started_at: Time | None
    completed_at: Time | None
    worker: str | None = Field(description="the worker process that last held it (host:pid)")


class IoPair(Resource):
    turn_index: Count
    input: Any
    output: Any
    started_at: Time
    completed_at: Time | None


class Comment(Resource):
    id: ObjectId
    author: str = Field(description="the prefix of the API key that wrote the comment")
    display_name: str | None = Field(description="the name the writer gave, unverified")
    text: str
    created_at: Time


class Tokens(Resource):
    total: Count
    prompt: Count
    completion: Count


class TokenUsage(Tokens):
    by_model: dict[str, Tokens]
    by_provider: dict[str, Tokens]


class ModelLatency(Resource):
    calls: Count
    avg_latency_ms: Annotated[float, Field(ge=0)]


class LatencyStats(Resource):
    total_calls: Count
    avg_latency_ms: Annotated[float, Field(ge=0)]
    by_model: dict[str, ModelLatency]


class Progress(Resource):
    steps_total: Count
    steps_done: Count


class RunError(BaseModel):
    """Why a run failed."""

    type: str
    message: str
    step_id: ObjectId | None = Field(None, description="the failed step, when a block failed")
    block_id: BlockId | None = Field(None, description="the failed block, when a block failed")


class Evaluation(BaseModel):
    """The evaluation run of this run: its id, status and outputs once it ended."""

    run_id: ObjectId | None = Field(description="null when the evaluation could not start")
    status: RunStatusName
    termination_reason: TerminationReasonName | None = None
    outputs: Any
    error: str | None = Field(None, description="why the evaluation could not start")


class RunSummary(Resource):
    id: ObjectId
    workflow_id: ObjectId
    version: VersionRef
    version_name: str | None
    status: RunStatusName
    termination_reason: TerminationReasonName | None
    initiator: str | None
    metadata: dict[str, Any]
    original_run_id: ObjectId | None
    parent_turn_index: Count | None
    is_evaluation: bool
    progress: Progress
    error: RunError | None
    created_at: Time
    updated_at: Time
    completed_at: Time | None


class Run(RunSummary):
    io_pairs: list[IoPair]
    comments: list[Comment]
    token_usage: TokenUsage
    latency_stats: LatencyStats
    config: RunConfig
    evaluation: Evaluation | None


Item = TypeVar("Item")


class ListMetadata(Resource):
    before: ObjectId | None = Field(description="the first item when items precede this page")
    after: ObjectId | None = Field(description="the last item when items follow this page")


class Page(Resource, Generic[Item]):
    data: list[Item]
    has_more: bool = Field(description="more items in the direction this page was asked for")
    next_after: ObjectId | None = Field(description="pass as ?after= for the next page")
    list_metadata: ListMetadata


class WorkflowPage(Page[WorkflowSummary]):
    pass


class RunPage(Page[RunSummary]):
    pass


class StepPage(Page[Step]):
    pass


class Health(Resource):
    status: Literal["ok"]


class ReadyChecks(Resource):
    database: str
    broker: str


class Ready(Resource):
    status: Literal["ok"]
    checks: ReadyChecks


class OpenApiDocument(BaseModel):
    """This document (OpenAPI 3.1)."""

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


class BlockChanges(Resource):
    added: list[str] = Field(description="block ids in the draft only")
    removed: list[str] = Field(description="block ids in the version only")
    changed: list[str] = Field(description="block ids whose type or config differ")


class EdgeChanges(Resource):
    added: list[str] = Field(description="edges (source.handle->target.handle) in the draft only")
    removed: list[str] = Field(description="edges in the version only")


class GraphDiff(Resource):
    """The draft against a published version, as a block execution's drift check sees it."""

    workflow_id: ObjectId
    version: Annotated[int, Field(ge=0)]
    identical: bool
    blocks: BlockChanges
    edges: EdgeChanges
