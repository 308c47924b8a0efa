"""end: whatever reaches it is its turn's output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.blocks.base import ANY, BlockKind, Handles
from engine.execute import Outcome, Toolbox
from engine.graph.model import Block


class EndBlock(BlockKind):
    type = "end"
    retryable = False
    ends_turn = True
    once_per_turn = True

    def handles(self, config: Mapping[str, Any]) -> Handles:
        return Handles(inputs=ANY, outputs=frozenset())

    def execute(self, block: Block, inputs: Mapping[str, Any], tools: Toolbox) -> Outcome:
        return Outcome(outputs=dict(inputs), active=())
