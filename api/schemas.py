"""Request bodies and query strings (validated at the edge) and the answers' shapes.

The request models validate what clients send. The response models further down only
document what ``api.views`` returns, field by field, in ``/openapi.json``; the answers are
built by the views, and the fuzz and unit tests hold the two together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, RootModel, model_validator
from typing_extensions import TypedDict

from engine.pages import PageRequest

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
    # A label shown beside the author, who is always the key that writes the comment;
    # ``author`` is accepted as its former name.
    display_name: str | None = Field(
        None, min_length=1, max_length=200, validation_alias=AliasChoices("display_name", "author")
    )


class PageQuery(Strict):
    limit: int = Field(50, ge=1, le=200)
    after: ObjectId | None = Field(None, description="the page after this id, in list order")
    before: ObjectId | None = Field(None, description="the page before this id, in list order")
    order: Literal["desc", "asc"] = Field("desc", description="by id: desc is newest first")

    @model_validator(mode="after")
    def _one_cursor(self) -> PageQuery:
        if self.after is not None and self.before is not None:
            raise ValueError("send after or before, not both")
        return self

    def page(self) -> PageRequest:
        return PageRequest(limit=self.limit, after=self.after, before=self.before, order=self.order)


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


# -- answers -----------------------------------------------------------------------------
# ``extra="forbid"`` makes each schema closed (``additionalProperties: false``): a field a
# view adds without documenting it fails the schema conformance checks.

Time = datetime  # documented as ``{"type": "string", "format": "date-time"}`` (RFC 3339, Z)
Count = Annotated[int, Field(ge=0)]
VersionRef = Annotated[int, Field(ge=0)] | Literal["draft"]
RunStatusName = Literal[
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
TerminationReasonName = Literal[
    "execution_error", "stale_run_reaper", "finally_safety_net", "cancelled", "looping_risk"
]


class Resource(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
