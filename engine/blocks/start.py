"""start: the run's inputs, one output handle per declared input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.blocks.base import HANDLE_ID, BlockKind, Err, Handles
from engine.execute import Outcome, Toolbox
from engine.graph.model import Block


class StartBlock(BlockKind):
    type = "start"
    retryable = False
    passes_inputs = True
    once_per_turn = True

    def handles(self, config: Mapping[str, Any]) -> Handles:
        inputs_cfg = config.get("inputs")
        names = inputs_cfg if isinstance(inputs_cfg, Mapping) else {}
        return Handles(inputs=frozenset(), outputs=frozenset(str(k) for k in names))

    def check(self, config: Mapping[str, Any], err: Err) -> None:
        inputs = config.get("inputs", {})
        if not isinstance(inputs, Mapping):
            err(("inputs",), "must be an object mapping handle ids to {type}")
            return
        for name, spec in inputs.items():
            if not HANDLE_ID.match(str(name)):
                err(("inputs", name), "not a valid handle id")
            kind = spec.get("type") if isinstance(spec, Mapping) else None
            if kind not in ("json", "file"):
                err(("inputs", name, "type"), "must be 'json' or 'file'")

    def execute(self, block: Block, inputs: Mapping[str, Any], tools: Toolbox) -> Outcome:
        return Outcome(outputs=dict(inputs), active=tuple(inputs))
