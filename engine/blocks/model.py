"""What the model-calling block types share: one request, or n_consensus samples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from engine.blocks.base import CONSENSUS_SIZES, BlockKind, Err, Handles
from engine.execute import Outcome, Toolbox, call_model
from engine.graph.model import Block
from engine.providers.base import ModelRequest, ModelResponse


class ModelBlock(BlockKind):
    calls_model = True
    # The provider's task name for this kind.
    task: ClassVar[str] = ""

    def handles(self, config: Mapping[str, Any]) -> Handles:
        return Handles(inputs=frozenset({"document"}), outputs=frozenset({"output"}))

    def check(self, config: Mapping[str, Any], err: Err) -> None:
        if "n_consensus" in config:
            n = config["n_consensus"]
            # An int, not merely equal to one: 3.0 == 3, but the runtime reads only ints.
            if type(n) is not int or n not in CONSENSUS_SIZES:
                err(("n_consensus",), f"must be one of {list(CONSENSUS_SIZES)}")
        self.check_model(config, err)

    def check_model(self, config: Mapping[str, Any], err: Err) -> None:
        """The kind's own config checks."""

    def schema(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON schema the model's answer must fit."""
        return dict(config.get("schema") or {"type": "object"})

    def request(
        self, block: Block, inputs: Mapping[str, Any], *, sample_index: int
    ) -> ModelRequest:
        return ModelRequest(
            task=self.task,
            instructions=str(block.config.get("instructions") or ""),
            document=inputs.get("document"),
            json_schema=self.schema(block.config),
            model=block.config.get("model"),
            sample_index=sample_index,
        )

    def outcome(
        self,
        block: Block,
        inputs: Mapping[str, Any],
        data: Any,
        *,
        calls: tuple[ModelResponse, ...] = (),
        consensus: dict[str, Any] | None = None,
    ) -> Outcome:
        """The block's outputs from the model's (or the reconciled) answer."""
        return Outcome(
            outputs={"output": data}, active=("output",), calls=calls, consensus=consensus
        )

    def execute(self, block: Block, inputs: Mapping[str, Any], tools: Toolbox) -> Outcome:
        response = call_model(tools.provider, self.request(block, inputs, sample_index=0))
        return self.outcome(block, inputs, response.data, calls=(response,))
