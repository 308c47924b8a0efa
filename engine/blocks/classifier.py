"""classifier: the document goes out on the one category handle the model chose."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.answers import BAD_ANSWER
from engine.blocks.base import Err, Handles, check_names
from engine.blocks.model import ModelBlock
from engine.execute import BlockFailed, Outcome
from engine.graph.model import Block
from engine.providers.base import ModelResponse


def _categories(config: Mapping[str, Any]) -> list[str]:
    cats = config.get("categories") or []
    return [str(c) for c in cats] if isinstance(cats, list) else []


class ClassifierBlock(ModelBlock):
    type = "classifier"
    task = "classify"

    def handles(self, config: Mapping[str, Any]) -> Handles:
        return Handles(inputs=frozenset({"document"}), outputs=frozenset(_categories(config)))

    def check_model(self, config: Mapping[str, Any], err: Err) -> None:
        check_names(config.get("categories"), ("categories",), err)

    def schema(self, config: Mapping[str, Any]) -> dict[str, Any]:
        cats = [str(c) for c in config.get("categories") or []]
        return {
            "type": "object",
            "properties": {"category": {"type": "string", "enum": cats}},
            "required": ["category"],
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
