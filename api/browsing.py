"""Query and answer models of the reads that finding and comparing runs adds to the API.

Run list filters beyond the contract's (a creation time range, an id prefix) and the draft's
difference from a published version. Documented in ``/openapi.json`` like the others.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from api.execution_schemas import ExecutionsQuery
from api.schemas import ObjectId, Resource, RunsQuery

ID_PREFIX = r"^[0-9a-f]{1,24}$"


class RunsListQuery(RunsQuery):
    """The contract's run filters, and a creation time range and an id prefix."""

    created_from: AwareDatetime | None = Field(
        None, description="runs created at or after this time (RFC 3339 with a time zone)"
    )
    created_to: AwareDatetime | None = Field(
        None, description="runs created before this time (RFC 3339 with a time zone)"
    )
    id_prefix: Annotated[str, Field(pattern=ID_PREFIX)] | None = Field(
        None, description="runs whose id starts with these hex digits (1 to 24)"
    )

    @field_validator("created_to")
    @classmethod
    def _after_start(cls, value: AwareDatetime | None, info: ValidationInfo) -> object:
        start = info.data.get("created_from")
        if value is not None and start is not None and value <= start:
            raise ValueError("must be later than created_from")
        return value


class ExecutionsListQuery(ExecutionsQuery):
    workflow_id: ObjectId | None = Field(None, description="executions of this workflow's blocks")


class DraftDiffQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        None, ge=0, le=2**31 - 1, description="the published version (default: the latest)"
    )


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
