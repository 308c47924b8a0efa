"""The query strings of the API's list and read operations (422 naming each bad one).

Run list filters go beyond the contract's (a creation time range, an id prefix).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from api.fields import BlockId, ObjectId, RunStatusName, Strict
from engine.pages import PageRequest

ID_PREFIX = r"^[0-9a-f]{1,24}$"


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
    status: RunStatusName | None = None
    original_run_id: ObjectId | None = None


class ExecutionsQuery(PageQuery):
    run_id: ObjectId | None = None
    block_id: BlockId | None = None


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
