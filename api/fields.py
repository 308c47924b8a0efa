"""The field types and base models every request and answer model of the API shares."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ObjectId = Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
BlockId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
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


# A request model: a field it does not declare is refused (422).
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# An answer model, closed (``additionalProperties: false``): a field a view adds without
# documenting it fails the schema conformance checks.
class Resource(BaseModel):
    model_config = ConfigDict(extra="forbid")
