"""Every block type, by its type string: the one place that maps strings to kinds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.blocks.base import BlockKind, Handles, field_errors
from engine.blocks.classifier import ClassifierBlock
from engine.blocks.end import EndBlock
from engine.blocks.extract import ExtractBlock
from engine.blocks.for_each import ForEachBlock
from engine.blocks.function import FunctionBlock
from engine.blocks.human_input import HumanInputBlock
from engine.blocks.model import ModelBlock
from engine.blocks.router import RouterBlock
from engine.blocks.split import SplitBlock
from engine.blocks.start import StartBlock
from engine.errors import FieldError

KINDS: dict[str, BlockKind] = {
    k.type: k
    for k in (
        StartBlock(),
        FunctionBlock(),
        ExtractBlock(),
        ClassifierBlock(),
        SplitBlock(),
        RouterBlock(),
        ForEachBlock(),
        HumanInputBlock(),
        EndBlock(),
    )
}
BLOCK_TYPES = frozenset(KINDS)
MODEL_TYPES = frozenset(t for t, k in KINDS.items() if k.calls_model)
# Step rows of these types make a turn's output (SQL filters need the strings).
TURN_OUTPUT_TYPES = tuple(t for t, k in KINDS.items() if k.ends_turn or k.awaits_input)
AWAITING_TYPES = tuple(t for t, k in KINDS.items() if k.awaits_input)

# An unknown type (a graph being validated): no handles, the common checks only.
_UNKNOWN = BlockKind()


def kind_of(block_type: str) -> BlockKind:
    return KINDS.get(block_type, _UNKNOWN)


def model_kind(block_type: str) -> ModelBlock:
    kind = KINDS.get(block_type)
    if not isinstance(kind, ModelBlock):
        raise ValueError(f"block type {block_type!r} calls no model")
    return kind


def handles_of(block_type: str, config: Mapping[str, Any]) -> Handles:
    # The config may not have been checked yet (validation asks for handles while it
    # collects errors), so every shape is tolerated here and nothing can raise.
    return kind_of(block_type).handles(config)


def check_config(block_type: str, config: Mapping[str, Any]) -> list[FieldError]:
    """Config errors of one block, located relative to the block's ``config``."""
    errors, err = field_errors()
    kind = kind_of(block_type)
    if kind.retryable:
        retries = config.get("retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            err(("retries",), "must be an integer from 0 to 10")
        backoff = config.get("retry_backoff_s", 1.0)
        if (
            isinstance(backoff, bool)
            or not isinstance(backoff, int | float)
            or not 0 <= backoff <= 600
        ):
            err(("retry_backoff_s",), "must be a number of seconds from 0 to 600")
    kind.check(config, err)
    return errors
