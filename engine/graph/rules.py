"""The structure a parsed graph must have, beyond each block and edge being well formed.

A for_each body holds only blocks that can repeat, and edges cross its boundary only from
its ``item`` handle; every loop passes through a router; every block is reachable from a
start block.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from engine.blocks.registry import kind_of
from engine.errors import FieldError
from engine.graph.model import Graph

Loc = tuple[str | int, ...]


def structure_errors(graph: Graph, loc: Loc, index: Mapping[str, int]) -> Iterator[FieldError]:
    """Every structural problem of ``graph``; ``index`` maps a block id to its position."""
    yield from _body_members(graph, loc, index)
    yield from _boundary_edges(graph, loc)
    yield from _loops_without_router(graph, loc)
    yield from _unreachable(graph, loc, index)


def _body_members(graph: Graph, loc: Loc, index: Mapping[str, int]) -> Iterator[FieldError]:
    for b in graph.blocks:
        if not kind_of(b.type).fans_out:
            continue
        for member in b.config.get("body") or []:
            m = graph.by_id.get(str(member))
            if m is None or kind_of(m.type).once_per_turn or m.id == b.id:
                yield FieldError(
                    loc=(*loc, "blocks", index[b.id], "config", "body"),
                    msg=f"{member!r} cannot be a body block",
                )


def _boundary_edges(graph: Graph, loc: Loc) -> Iterator[FieldError]:
    owner = graph.body_owner
    for j, e in enumerate(graph.edges):
        src_scope = owner.get(e.source)
        dst_scope = owner.get(e.target)
        into_body = e.source == dst_scope and e.source_handle == "item"
        if src_scope != dst_scope and not into_body:
            yield FieldError(
                loc=(*loc, "edges", j),
                msg="an edge may not cross a for_each body boundary"
                " except from the for_each's 'item' handle",
            )
        elif (
            e.source_handle == "item"
            and kind_of(graph.by_id[e.source].type).fans_out
            and dst_scope != e.source
        ):
            yield FieldError(
                loc=(*loc, "edges", j),
                msg="the 'item' handle feeds only the for_each's body",
            )


def _loops_without_router(graph: Graph, loc: Loc) -> Iterator[FieldError]:
    # A strongly connected component without a router would wait on itself forever.
    for comp in graph._sccs:
        if graph._is_loop(comp) and not any(kind_of(graph.by_id[b].type).routes for b in comp):
            members = sorted(comp)
            bad = [j for j, e in enumerate(graph.edges) if e.source in comp and e.target in comp]
            yield FieldError(
                loc=(*loc, "edges", bad[0] if bad else 0),
                msg=f"cycle without a router through blocks {members}",
            )


def _unreachable(graph: Graph, loc: Loc, index: Mapping[str, int]) -> Iterator[FieldError]:
    reachable: set[str] = set()
    todo = [b.id for b in graph.start_blocks]
    while todo:
        cur = todo.pop()
        if cur in reachable:
            continue
        reachable.add(cur)
        todo.extend(e.target for e in graph.outgoing(cur))
    for b in graph.blocks:
        if b.id not in reachable:
            yield FieldError(
                loc=(*loc, "blocks", index[b.id]),
                msg=f"block {b.id!r} is not reachable from a start block",
            )
