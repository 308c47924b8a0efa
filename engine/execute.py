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
from engine.blocks import router_handles
from engine.consensus import FAILED, ConsensusOptions, reconcile
from engine.expressions.evaluate import evaluate
from engine.expressions.values import ExpressionError
from engine.functions import FunctionNotFound, FunctionRegistry, call_function
from engine.graph.model import Block
from engine.providers.base import ModelRequest, ModelResponse, Provider, ProviderError
from engine.storable import unstorable


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


def run_block(block: Block, inputs: Mapping[str, Any], tools: Toolbox) -> Outcome:
    """Execute a block that finishes in one call (everything but fan-out and human input)."""
    kind = block.type
    if kind == "start":
        return Outcome(outputs=dict(inputs), active=tuple(inputs))
    if kind == "end":
        return Outcome(outputs=dict(inputs), active=())
    if kind == "function":
        return _run_function(block, inputs, tools.functions)
    if kind == "router":
        return _run_router(block, inputs)
    if kind in ("extract", "classifier", "split"):
        response = call_model(tools.provider, model_request(block, inputs, sample_index=0))
        return model_outcome(block, inputs, response.data, calls=(response,))
    raise BlockFailed("unsupported_block", f"block type {kind!r} cannot run as a single call")


def _run_function(block: Block, inputs: Mapping[str, Any], functions: FunctionRegistry) -> Outcome:
    name = str(block.config.get("function"))
    try:
        fn = functions.get(name)
    except FunctionNotFound as exc:
        raise BlockFailed("function_not_found", str(exc)) from None
    try:
        result = call_function(fn, inputs, block.config.get("params") or {})
    except Exception as exc:  # user code: any failure is the block's failure
        raise BlockFailed(type(exc).__name__, str(exc) or type(exc).__name__) from exc
    bad = unstorable(result)
    if bad:
        raise BlockFailed(
            "invalid_output", f"{name!r} returned a value that is not storable JSON: {bad}"
        )
    declared = block.config.get("outputs")
    if declared:
        if not isinstance(result, Mapping):
            raise BlockFailed(
                "bad_function_result",
                f"{name!r} declares outputs {declared} and must return an object keyed by them",
            )
        unknown = sorted(set(result) - set(declared))
        if unknown:
            raise BlockFailed(
                "bad_function_result", f"{name!r} returned undeclared outputs {unknown}"
            )
        return Outcome(outputs=dict(result), active=tuple(h for h in declared if h in result))
    return Outcome(outputs={"output": result}, active=("output",))


def _run_router(block: Block, inputs: Mapping[str, Any]) -> Outcome:
    value = inputs.get("input")
    variables = {"input": value}
    first_only = block.config.get("mode", "first") == "first"
    active: list[str] = []
    for route in block.config.get("routes") or []:
        try:
            hit = evaluate(str(route["when"]), variables)
        except ExpressionError as exc:
            raise BlockFailed("expression_error", f"route {route.get('handle')!r}: {exc}") from None
        if hit:
            active.append(str(route["handle"]))
            if first_only:
                break
    if not active and block.config.get("default"):
        active.append(str(block.config["default"]))
    known = set(router_handles(block.config))
    return Outcome(outputs={h: value for h in active if h in known}, active=tuple(active))


def model_schema(block: Block) -> dict[str, Any]:
    if block.type == "classifier":
        cats = [str(c) for c in block.config.get("categories") or []]
        return {
            "type": "object",
            "properties": {"category": {"type": "string", "enum": cats}},
            "required": ["category"],
            "additionalProperties": False,
        }
    if block.type == "split":
        names = [
            p["name"] if isinstance(p, Mapping) else str(p) for p in block.config.get("parts") or []
        ]
        return {
            "type": "object",
            "properties": {n: {"type": "string"} for n in names},
            "required": names,
            "additionalProperties": False,
        }
    return dict(block.config.get("schema") or {"type": "object"})


def model_request(block: Block, inputs: Mapping[str, Any], *, sample_index: int) -> ModelRequest:
    task = {"extract": "extract", "classifier": "classify", "split": "split"}[block.type]
    return ModelRequest(
        task=task,
        instructions=str(block.config.get("instructions") or ""),
        document=inputs.get("document"),
        json_schema=model_schema(block),
        model=block.config.get("model"),
        sample_index=sample_index,
    )


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


def model_outcome(
    block: Block,
    inputs: Mapping[str, Any],
    data: Any,
    *,
    calls: tuple[ModelResponse, ...] = (),
    consensus: dict[str, Any] | None = None,
) -> Outcome:
    if block.type == "classifier":
        cats = [str(c) for c in block.config.get("categories") or []]
        category = data.get("category") if isinstance(data, Mapping) else None
        if category not in cats:
            raise BlockFailed(BAD_ANSWER, f"category {category!r} is not one of {cats}")
        return Outcome(
            outputs={category: inputs.get("document")},
            active=(category,),
            calls=calls,
            consensus=consensus,
        )
    if block.type == "split":
        parts = data if isinstance(data, Mapping) else {}
        names = list(model_schema(block)["properties"])
        outputs = {n: parts.get(n) for n in names if parts.get(n)}
        return Outcome(
            outputs=outputs,
            active=tuple(outputs),
            calls=calls,
            consensus=consensus,
        )
    return Outcome(
        outputs={"output": data},
        active=("output",),
        calls=calls,
        consensus=consensus,
    )


def reconcile_answers(
    block: Block,
    answers: Sequence[Any],
    failures: Sequence[tuple[str | None, str | None]],
) -> tuple[Any, dict[str, Any]]:
    """Reconcile consensus samples field by field (``None``: the sample failed, and
    ``failures`` says why), keeping each sample's raw answer or error beside the result."""
    options = ConsensusOptions(
        number_tolerance=float(block.config.get("consensus_tolerance", 0.01)),
        list_key=block.config.get("consensus_list_key"),
    )
    marked = [FAILED if a is None else a for a in answers]
    result = reconcile(marked, schema=model_schema(block), options=options)
    raw = [
        {"answer": a} if a is not None else {"error": {"type": kind, "message": message}}
        for a, (kind, message) in zip(answers, failures, strict=True)
    ]
    return result.value, {**result.as_dict(), "answers": raw}
