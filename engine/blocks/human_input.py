"""human_input: ends the turn with a prompt; the answer opens the next turn."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.blocks.base import BlockKind, Err, Handles, check_schema


class HumanInputBlock(BlockKind):
    type = "human_input"
    retryable = False
    rerunnable = False
    awaits_input = True
    once_per_turn = True

    def handles(self, config: Mapping[str, Any]) -> Handles:
        return Handles(inputs=frozenset({"prompt"}), outputs=frozenset({"response"}))

    def check(self, config: Mapping[str, Any], err: Err) -> None:
        schema = config.get("schema")
        if schema is not None and not isinstance(schema, Mapping):
            err(("schema",), "must be a JSON schema object")
        elif schema:
            check_schema(schema, err)
