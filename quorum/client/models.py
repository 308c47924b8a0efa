"""The API's resources as frozen, permissive models.

Every model accepts fields it does not know (a newer server) and keeps them in ``extra``;
``raw`` is the object exactly as received.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

TERMINAL_RUN = frozenset({"completed", "failed", "cancelled", "aborted_looping_risk"})
TERMINAL_LIFECYCLE = frozenset({"completed", "error", "cancelled", "skipped"})


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def parse(cls, data: Any) -> Any:
        obj = cls.model_validate(data)
        if isinstance(data, dict):
            obj._raw = data
        return obj

    @property
    def extra(self) -> dict[str, Any]:
        """Fields the server sent that this version of the client does not know."""
        return dict(self.model_extra or {})

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw


class Progress(Model):
    steps_total: int = 0
    steps_done: int = 0


class Lifecycle(Model):
    """``status`` and the status's own fields (``queued_at``, ``worker``, ``message``...)."""

    status: str
    queued_at: datetime | None = None
    started_at: datetime | None = None
    worker: str | None = None
    attempt: int | None = None
    message: str | None = None
    error: dict[str, Any] | None = None
    reason: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_LIFECYCLE


class VersionSummary(Model):
    number: int
    name: str | None = None
    created_at: datetime | None = None


class Workflow(Model):
    """A workflow; ``draft`` and ``versions`` are absent (``None``) in lists."""

    id: str
    name: str
    description: str | None = None
    draft: dict[str, Any] | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    latest_version: int | None = None
    versions: list[VersionSummary] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Version(Model):
    workflow_id: str
    number: int
    name: str | None = None
    graph: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None


class IoPair(Model):
    turn_index: int
    input: Any = None
    output: Any = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


class Comment(Model):
    id: str
    author: str | None = None  # the prefix of the key that wrote it
    display_name: str | None = None  # the name its writer gave (``author=`` when posting)
    text: str
    created_at: datetime | None = None


class Run(Model):
    """A run; lists return summaries, where ``io_pairs``, ``config``... are empty."""

    id: str
    workflow_id: str
    version: int | str | None = None
    version_name: str | None = None
    status: str
    termination_reason: str | None = None
    error: dict[str, Any] | None = None
    io_pairs: list[IoPair] = Field(default_factory=list)
    initiator: str | None = None
    comments: list[Comment] = Field(default_factory=list)
    token_usage: dict[str, Any] = Field(default_factory=dict)
    latency_stats: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    original_run_id: str | None = None
    parent_turn_index: int | None = None
    is_evaluation: bool = False
    evaluation: Any = None
    progress: Progress = Field(default_factory=Progress)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_RUN

    @property
    def output(self) -> Any:
        """The output of the last turn (``None`` before it ends)."""
        return self.io_pairs[-1].output if self.io_pairs else None


class Step(Model):
    id: str
    run_id: str
    step_id: str
    block_id: str
    block_type: str
    turn_index: int = 0
    iteration: str | None = None
    visit: int = 1
    lifecycle: Lifecycle
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    active_output_handles: list[str] | None = None
    duration_ms: int | None = None
    n_consensus: int | None = None
    consensus: Any = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def status(self) -> str:
        return self.lifecycle.status


class BlockExecution(Model):
    id: str
    workflow_id: str
    source_run_id: str
    source_step_id: str | None = None
    block_id: str
    block_type: str
    lifecycle: Lifecycle
    workflow_version_id: str | None = None
    handle_inputs: dict[str, Any] = Field(default_factory=dict)
    handle_outputs: dict[str, Any] | None = None
    artifact: dict[str, Any] | None = None
    routing_decisions: list[str] | None = None
    duration_ms: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    block_config: dict[str, Any] | None = None
    available_iterations: list[dict[str, Any]] | None = None
    n_consensus: int | None = None
    consensus: Any = None

    @property
    def status(self) -> str:
        return self.lifecycle.status


class Event(Model):
    """One message of a run's event stream.

    ``kind`` is ``run`` (``data``: ``status``, ``termination_reason``, ``progress``...) or
    ``steps`` (``data["steps"]``: each step's new ``status``, ``reason``, ``error_type``).
    ``seq`` is what to resume after.
    """

    seq: int
    kind: str
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def status(self) -> str | None:
        value = self.data.get("status") if self.kind == "run" else None
        return value if isinstance(value, str) else None

    @property
    def progress(self) -> Progress | None:
        value = self.data.get("progress") if self.kind == "run" else None
        return Progress.parse(value) if isinstance(value, dict) else None

    @property
    def steps(self) -> list[dict[str, Any]]:
        value = self.data.get("steps") if self.kind == "steps" else None
        return [s for s in value if isinstance(s, dict)] if isinstance(value, list) else []

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_RUN


T = TypeVar("T")


class ListMetadata(BaseModel):
    """The cursors around a page: ``before`` its first item, ``after`` its last (or None)."""

    model_config = ConfigDict(frozen=True)

    before: str | None = None
    after: str | None = None


class Page(BaseModel, Generic[T]):
    """One page of a list: ``data``, ``has_more``, ``next_after`` and ``list_metadata``."""

    model_config = ConfigDict(frozen=True)

    data: list[T]
    has_more: bool = False
    next_after: str | None = None
    list_metadata: ListMetadata = Field(default_factory=ListMetadata)

    def __iter__(self) -> Iterator[T]:  # type: ignore[override]
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
