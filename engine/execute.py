"""Executing one block: pure logic from (block, inputs) to an :class:`Outcome`.

No database here: the worker wing (steps) and block executions both call these functions and
store what they return. Model blocks are split into ``model_request`` and
``model_outcome`` so that consensus can fan the request out and reconcile the answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.answers import BAD_ANSWER, INVALID_SCHEMA, SchemaUnusable, answer_problem
from engine.consensus import FAILED, ConsensusOptions, reconcile
from engine.functions import FunctionRegistry
from engine.graph.model import Block
from engine.providers.base import ModelRequest, ModelResponse, Provider, ProviderError


class BlockFailed(Exception):
    def __init__(
        self, error_type: str, message: str, *, calls: tuple[ModelResponse, ...] = ()
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message[:2000]
        # Model calls made before failing (an answer that did not fit): they count as usage.
        self.calls = calls


@dataclass(frozen=True, kw_only=True)
class Outcome:
    outputs: dict[str, Any]
    active: tuple[str, ...]
    calls: tuple[ModelResponse, ...] = ()
    consensus: dict[str, Any] | None = None
    # Bytes the step stores (its inputs and outputs), measured by engine.limits.measured.
    stored_bytes: int = 0


@dataclass(frozen=True, kw_only=True)
class Toolbox:
    """What executing a block may need from the deployment."""

    functions: FunctionRegistry
    provider: Provider
    extra: Mapping[str, Any] = field(default_factory=dict)


def wrap(values: Mapping[str, Any], kinds: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Data keyed by handle -> the stored form ``{"type": "json", "data": ...}``."""
    out: dict[str, Any] = {}
    for handle, value in values.items():
        if (kinds or {}).get(handle) == "file" and isinstance(value, Mapping):
            out[handle] = {"type": "file", **{k: v for k, v in value.items() if k != "type"}}
        else:
            out[handle] = {"type": "json", "data": value}
    return out


def unwrap(values: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for handle, value in (values or {}).items():
        if isinstance(value, Mapping) and value.get("type") == "json":
            out[handle] = value.get("data")
        elif isinstance(value, Mapping) and value.get("type") == "file":
            out[handle] = dict(value)
        else:
            out[handle] = value
    return out


def call_model(provider: Provider, request: ModelRequest) -> ModelResponse:
    """One model call whose answer fits the request's schema, else :class:`BlockFailed`."""
    try:
        response = provider.complete(request)
    except ProviderError as exc:
        raise BlockFailed(exc.error_type, str(exc)) from None
    try:
        problem = answer_problem(request.json_schema, response.data)
    except SchemaUnusable as exc:
        raise BlockFailed(INVALID_SCHEMA, str(exc), calls=(response,)) from None
    if problem:
        raise BlockFailed(BAD_ANSWER, problem, calls=(response,))
    return response


def reconcile_answers(
    block: Block,
    answers: Sequence[Any],
    failures: Sequence[tuple[str | None, str | None]],
    *,
    schema: Mapping[str, Any],
) -> tuple[Any, dict[str, Any]]:
    """Reconcile consensus samples field by field (``None``: the sample failed, and
    ``failures`` says why), keeping each sample's raw answer or error beside the result."""
    options = ConsensusOptions(
        number_tolerance=float(block.config.get("consensus_tolerance", 0.01)),
        list_key=block.config.get("consensus_list_key"),
    )
    marked = [FAILED if a is None else a for a in answers]
    result = reconcile(marked, schema=dict(schema), options=options)
    raw = [
        {"answer": a} if a is not None else {"error": {"type": kind, "message": message}}
        for a, (kind, message) in zip(answers, failures, strict=True)
    ]
    return result.value, {**result.as_dict(), "answers": raw}
