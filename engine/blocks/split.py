"""split: the document cut into named parts, each on its own output handle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.blocks.base import Err, Handles, check_names
from engine.blocks.model import ModelBlock
from engine.execute import Outcome
from engine.graph.model import Block
from engine.providers.base import ModelResponse


def _parts(config: Mapping[str, Any]) -> list[str]:
    parts = config.get("parts") or []
    names: list[str] = []
    if isinstance(parts, list):
        for p in parts:
            names.append(str(p.get("name")) if isinstance(p, Mapping) else str(p))
    return names


class SplitBlock(ModelBlock):
    type = "split"
    task = "split"

    def handles(self, config: Mapping[str, Any]) -> Handles:
        return Handles(inputs=frozenset({"document"}), outputs=frozenset(_parts(config)))

    def check_model(self, config: Mapping[str, Any], err: Err) -> None:
        parts = config.get("parts")
        names = (
            [p.get("name") if isinstance(p, Mapping) else p for p in parts]
            if isinstance(parts, list)
            else parts
        )
        check_names(names, ("parts",), err)

    def schema(self, config: Mapping[str, Any]) -> dict[str, Any]:
        names = [p["name"] if isinstance(p, Mapping) else str(p) for p in config.get("parts") or []]
        return {
            "type": "object",
            "properties": {n: {"type": "string"} for n in names},
            "required": names,
            "additionalProperties": False,
        }

    def outcome(
        self,
        block: Block,
        inputs: Mapping[str, Any],
        data: Any,
        *,
        calls: tuple[ModelResponse, ...] = (),
        consensus: dict[str, Any] | None = None,
    ) -> Outcome:
        parts = data if isinstance(data, Mapping) else {}
        names = list(self.schema(block.config)["properties"])
        outputs = {n: parts.get(n) for n in names if parts.get(n)}
        return Outcome(outputs=outputs, active=tuple(outputs), calls=calls, consensus=consensus)
