"""The interface every block type implements, and what the types share."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from engine.errors import FieldError
from engine.execute import BlockFailed, Outcome, Toolbox
from engine.graph.model import Block
from engine.schemas import schema_problems

BLOCK_ID = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
HANDLE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
CONSENSUS_SIZES = (1, 3, 5, 7)
ANY = None  # input handles are whatever the edges name

# Reports one config error at a location relative to the block's ``config``.
Err = Callable[[tuple[str | int, ...], str], None]


@dataclass(frozen=True, kw_only=True)
class Handles:
    inputs: frozenset[str] | None  # None: any handle an edge names
    outputs: frozenset[str]


class BlockKind:
    """One block type. Subclasses override what differs from these defaults."""

    type: ClassVar[str] = ""
    # Calls a model (so it may run as n_consensus samples).
    calls_model: ClassVar[bool] = False
    # Honours ``retries`` and ``retry_backoff_s``.
    retryable: ClassVar[bool] = True
    # Can be run alone as a block execution (POST /v1/workflows/blocks/executions).
    rerunnable: ClassVar[bool] = True
    # Its outputs are its inputs exactly as given (the start block).
    passes_inputs: ClassVar[bool] = False
    # Runs its body once per item of its ``items`` input (a for_each).
    fans_out: ClassVar[bool] = False
    # Ends its turn with a question; the answer opens the next turn (human_input).
    awaits_input: ClassVar[bool] = False
    # Its outputs are its turn's output (the end block).
    ends_turn: ClassVar[bool] = False
    # Chooses which of its output handles are active (a router).
    routes: ClassVar[bool] = False
    # Runs once per turn of a run, never once per iteration of a for_each body.
    once_per_turn: ClassVar[bool] = False

    def handles(self, config: Mapping[str, Any]) -> Handles:
        """The block's handles. The config may not be checked yet: tolerate any shape."""
        return Handles(inputs=frozenset(), outputs=frozenset())

    def check(self, config: Mapping[str, Any], err: Err) -> None:
        """Report what is wrong with ``config`` through ``err``."""

    def execute(self, block: Block, inputs: Mapping[str, Any], tools: Toolbox) -> Outcome:
        """Run the block in one call (every kind but fan-outs and questions)."""
        raise BlockFailed(
            "unsupported_block", f"block type {block.type!r} cannot run as a single call"
        )


def n_consensus_of(config: Mapping[str, Any]) -> int:
    value = config.get("n_consensus", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def check_names(values: Any, loc: tuple[str | int, ...], err: Err) -> None:
    if not isinstance(values, list) or not values:
        err(loc, "a non-empty list of names is required")
        return
    seen: set[str] = set()
    for i, v in enumerate(values):
        if not isinstance(v, str) or not HANDLE_ID.match(v):
            err((*loc, i), "must be a handle id (letters, digits, _ . -)")
        elif v in seen:
            err((*loc, i), f"duplicate name {v!r}")
        else:
            seen.add(v)


def check_schema(schema: Mapping[str, Any], err: Err) -> None:
    for problem in schema_problems(schema):
        err(("schema",), problem)


def field_errors() -> tuple[list[FieldError], Err]:
    """A list of errors and the ``err`` that fills it (locations under ``config``)."""
    errors: list[FieldError] = []

    def err(loc: tuple[str | int, ...], msg: str) -> None:
        errors.append(FieldError(loc=("config", *loc), msg=msg))

    return errors, err
