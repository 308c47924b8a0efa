"""function: calls a registered Python function with the block's inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.blocks.base import ANY, HANDLE_ID, BlockKind, Err, Handles
from engine.execute import BlockFailed, Outcome, Toolbox
from engine.functions import FunctionNotFound, call_function
from engine.graph.model import Block
from engine.storable import unstorable


class FunctionBlock(BlockKind):
    type = "function"

    def handles(self, config: Mapping[str, Any]) -> Handles:
        outputs = config.get("outputs")
        if not isinstance(outputs, list) or not outputs:
            outputs = ["output"]
        return Handles(inputs=ANY, outputs=frozenset(str(o) for o in outputs))

    def check(self, config: Mapping[str, Any], err: Err) -> None:
        if not isinstance(config.get("function"), str) or not config.get("function"):
            err(("function",), "a registered function name is required")
        if "params" in config and not isinstance(config["params"], Mapping):
            err(("params",), "must be an object")
        outputs = config.get("outputs")
        if outputs is not None and not (
            isinstance(outputs, list)
            and outputs
            and all(isinstance(o, str) and HANDLE_ID.match(o) for o in outputs)
        ):
            err(("outputs",), "must be a non-empty list of handle ids")

    def execute(self, block: Block, inputs: Mapping[str, Any], tools: Toolbox) -> Outcome:
        name = str(block.config.get("function"))
        try:
            fn = tools.functions.get(name)
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
        return _outcome(name, result, block.config.get("outputs"))


def _outcome(name: str, result: Any, declared: Any) -> Outcome:
    if not declared:
        return Outcome(outputs={"output": result}, active=("output",))
    if not isinstance(result, Mapping):
        raise BlockFailed(
            "bad_function_result",
            f"{name!r} declares outputs {declared} and must return an object keyed by them",
        )
    unknown = sorted(set(result) - set(declared))
    if unknown:
        raise BlockFailed("bad_function_result", f"{name!r} returned undeclared outputs {unknown}")
    return Outcome(outputs=dict(result), active=tuple(h for h in declared if h in result))
