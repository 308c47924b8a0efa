"""for_each: runs its body once per item (engine.run.foreach gathers the results)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.blocks.base import BlockKind, Err, Handles


class ForEachBlock(BlockKind):
    type = "for_each"
    retryable = False
    rerunnable = False
    fans_out = True

    def handles(self, config: Mapping[str, Any]) -> Handles:
        return Handles(inputs=frozenset({"items"}), outputs=frozenset({"item", "results"}))

    def check(self, config: Mapping[str, Any], err: Err) -> None:
        body = config.get("body")
        if not isinstance(body, list) or not body or not all(isinstance(b, str) for b in body):
            err(("body",), "a non-empty list of block ids is required")
        collect = config.get("collect")
        if collect is not None and (not isinstance(body, list) or collect not in body):
            err(("collect",), "must name a block of the body")
