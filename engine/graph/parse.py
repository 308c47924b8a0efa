"""Building a :class:`~engine.graph.model.Graph` from JSON, naming every bad block and edge.

A client's graph is read strictly (unknown fields are refused too); a stored graph, which
was checked when it was written, is read leniently. Each block's config is checked by its
block type (:func:`engine.blocks.check_config`); the graph's structure (for_each bodies,
loops, reachability) by :mod:`engine.graph.rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.blocks.base import BLOCK_ID, HANDLE_ID
from engine.blocks.registry import BLOCK_TYPES, check_config, handles_of, kind_of
from engine.errors import FieldError, Invalid
from engine.graph.model import Block, Edge, Graph
from engine.graph.rules import Loc, structure_errors

BLOCK_FIELDS = frozenset({"id", "type", "name", "config"})
EDGE_KEYS = ("source", "source_handle", "target", "target_handle")
EDGE_FIELDS = frozenset(EDGE_KEYS)
MAX_BLOCK_NAME = 200
INVALID = "the graph is invalid"
# Each end of an edge: the attribute naming the block, the one naming its handle, and
# which of the block's handles it must be.
_ENDS = (("source", "source_handle", "outputs"), ("target", "target_handle", "inputs"))


def parse_graph(
    data: Mapping[str, Any],
    *,
    max_blocks: int = 200,
    loc: Loc = (),
    strict: bool = False,
) -> Graph:
    """Build a :class:`Graph` or raise :class:`Invalid` naming every offending block and edge.

    ``strict`` (graphs sent by a client) also refuses fields a block or an edge does not
    have; stored graphs are read leniently.
    """
    raw_blocks, raw_edges = _lists(data, loc, max_blocks)
    reader = _Reader(loc=loc, strict=strict)
    blocks = [b for i, raw in enumerate(raw_blocks) if (b := reader.block(i, raw)) is not None]
    by_id = {b.id: b for b in blocks}
    edges = [e for j, raw in enumerate(raw_edges) if (e := reader.edge(j, raw, by_id)) is not None]
    if not any(kind_of(b.type).passes_inputs for b in blocks) and not reader.errors:
        reader.error((*loc, "blocks"), "a start block is required")
    if reader.errors:
        raise Invalid(INVALID, errors=reader.errors)
    graph = Graph(blocks=tuple(blocks), edges=tuple(edges))
    errors = list(structure_errors(graph, loc, reader.seen))
    if errors:
        raise Invalid(INVALID, errors=errors)
    return graph


def _lists(data: Mapping[str, Any], loc: Loc, max_blocks: int) -> tuple[list[Any], list[Any]]:
    """The raw block and edge lists; a graph without them cannot be read any further."""
    raw_blocks = data.get("blocks")
    raw_edges = data.get("edges", [])
    if not isinstance(raw_blocks, list):
        raise _not_a_list(loc, "blocks")
    if not isinstance(raw_edges, list):
        raise _not_a_list(loc, "edges")
    if len(raw_blocks) > max_blocks:
        raise Invalid(
            f"a graph may hold at most {max_blocks} blocks",
            errors=[FieldError(loc=(*loc, "blocks"), msg=f"at most {max_blocks} blocks")],
        )
    return raw_blocks, raw_edges


def _not_a_list(loc: Loc, key: str) -> Invalid:
    return Invalid(INVALID, errors=[FieldError(loc=(*loc, key), msg="a list is required")])


@dataclass(kw_only=True)
class _Reader:
    """One parse: the errors found so far and the block ids seen (id -> index)."""

    loc: Loc
    strict: bool
    errors: list[FieldError] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)

    def error(self, loc: Loc, msg: str) -> None:
        self.errors.append(FieldError(loc=loc, msg=msg))

    def _unknown_fields(self, raw: Mapping[str, Any], at: Loc, known: frozenset[str]) -> None:
        if self.strict:
            for key in raw:
                if key not in known:
                    self.error((*at, str(key)), "unknown field")

    def block(self, i: int, raw: Any) -> Block | None:
        at = (*self.loc, "blocks", i)
        if not isinstance(raw, Mapping):
            self.error(at, "a block object is required")
            return None
        self._unknown_fields(raw, at, BLOCK_FIELDS)
        bid, btype, config = raw.get("id"), raw.get("type"), raw.get("config", {})
        if not isinstance(bid, str) or not BLOCK_ID.match(bid):
            self.error((*at, "id"), "block id must match ^[a-z][a-z0-9_-]{0,63}$")
            return None
        if bid in self.seen:
            self.error((*at, "id"), f"duplicate block id {bid!r}")
            return None
        self.seen[bid] = i
        if not isinstance(btype, str) or btype not in BLOCK_TYPES:
            self.error((*at, "type"), f"unknown block type {btype!r}")
            return None
        if not isinstance(config, Mapping):
            self.error((*at, "config"), "must be an object")
            return None
        name = self._name(raw.get("name"), at)
        for e in check_config(btype, config):
            self.error((*at, *e.loc), e.msg)
        return Block(id=bid, type=btype, name=name, config=dict(config))

    def _name(self, name: Any, at: Loc) -> str | None:
        if name is not None and not isinstance(name, str):
            self.error((*at, "name"), "must be a string")
        elif isinstance(name, str) and len(name) > MAX_BLOCK_NAME:
            self.error((*at, "name"), f"at most {MAX_BLOCK_NAME} characters")
        return name if isinstance(name, str) else None

    def edge(self, j: int, raw: Any, by_id: Mapping[str, Block]) -> Edge | None:
        at = (*self.loc, "edges", j)
        if not isinstance(raw, Mapping):
            self.error(at, "an edge object is required")
            return None
        self._unknown_fields(raw, at, EDGE_FIELDS)
        values = {k: raw.get(k) for k in EDGE_KEYS}
        bad = [k for k, v in values.items() if not isinstance(v, str)]
        if bad:
            for key in bad:
                self.error((*at, key), "a string is required")
            return None
        edge = Edge(**{k: str(v) for k, v in values.items()})
        # Both ends are checked (a list, not all() over a generator): each reports its error.
        ends_ok = [self._end(edge, end, at, by_id) for end in _ENDS]
        return edge if all(ends_ok) else None

    def _end(
        self, edge: Edge, end: tuple[str, str, str], at: Loc, by_id: Mapping[str, Block]
    ) -> bool:
        block_key, handle_key, side = end
        block = by_id.get(getattr(edge, block_key))
        if block is None:
            if getattr(edge, block_key) not in self.seen:
                self.error((*at, block_key), f"unknown block {getattr(edge, block_key)!r}")
            return False
        allowed = getattr(handles_of(block.type, block.config), side)
        handle = getattr(edge, handle_key)
        if (allowed is not None and handle not in allowed) or not HANDLE_ID.match(handle):
            self.error(
                (*at, handle_key), f"block {block.id!r} has no {side[:-1]} handle {handle!r}"
            )
            return False
        return True
