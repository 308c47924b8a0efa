"""The request bodies the API validates (422 naming each bad field)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, model_validator

from api.fields import BlockId, ObjectId, Strict


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
