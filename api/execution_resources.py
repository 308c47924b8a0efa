"""The block-execution resource in the seed system's wire format (Retab's workflow block
executions), so that its own SDK works against Quorum unchanged.

Answers are built by ``api.views.execution``; these models document them in
``/openapi.json`` (closed schemas, like every answer in ``api.resources``). The request
body is ``api.bodies.CreateExecution``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from api.fields import BlockId, Count, ObjectId, Resource, Time
from api.resources import Lifecycle, Page


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
