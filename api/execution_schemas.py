"""The block-execution resource in the seed system's wire format (Retab's workflow block
executions), request and answer, so that its own SDK works against Quorum unchanged.

Answers are built by ``api.views.execution``; these models document them in
``/openapi.json`` (closed schemas, like every answer in ``api.schemas``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, model_validator

from api.schemas import (
    BlockId,
    Count,
    Lifecycle,
    ObjectId,
    Page,
    PageQuery,
    Resource,
    Strict,
    Time,
)


class CreateExecution(Strict):
    run_id: ObjectId
    block_id: BlockId
    step_id: str | None = Field(None, min_length=1, max_length=400)
    n_consensus: int | None = None
    check_eligibility: bool = Field(
        True,
        validation_alias=AliasChoices("check_eligibility", "verify_upstream"),
        description="refuse (409) when the draft drifted upstream of the block; "
        "verify_upstream is accepted as an alias (one of the two, not both)",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "check_eligibility" in data and "verify_upstream" in data:
            raise ValueError("send check_eligibility or its alias verify_upstream, not both")
        return data


class ExecutionsQuery(PageQuery):
    run_id: ObjectId | None = None
    block_id: BlockId | None = None


class JsonHandle(Resource):
    type: Literal["json"]
    data: Any


class DocumentRef(Resource):
    id: str
    filename: str
    mime_type: str


class FileHandle(Resource):
    type: Literal["file"]
    document: DocumentRef


Handle = Annotated[JsonHandle | FileHandle, Field(discriminator="type")]


class Artifact(Resource):
    operation: Literal[
        "extraction",
        "split",
        "classification",
        "conditional_evaluation",
        "function_invocation",
    ]
    id: ObjectId = Field(description="the block execution that holds what was produced")


class Iteration(Resource):
    step_id: str
    iteration: str | None = Field(description="the for_each iteration, e.g. pages[2]")


class BlockExecution(Resource):
    id: ObjectId
    workflow_id: ObjectId
    source_run_id: ObjectId
    source_step_id: str | None
    block_id: BlockId
    block_type: str
    lifecycle: Lifecycle
    workflow_version_id: str = Field(description='the source run\'s version number, or "draft"')
    handle_inputs: dict[str, Handle]
    handle_outputs: dict[str, Handle] | None
    artifact: Artifact | None
    routing_decisions: list[str] | None
    duration_ms: Count | None
    created_at: Time
    started_at: Time | None
    completed_at: Time | None
    block_config: dict[str, Any]
    available_iterations: list[Iteration] | None
    n_consensus: Annotated[int, Field(ge=1)]
    consensus: dict[str, Any] | None


class BlockExecutionPage(Page[BlockExecution]):
    pass
