"""Graph shapes that would never end, refused when a workflow is saved.

``engine.graph`` checks that a graph is well formed; this module checks that the
scheduler can finish every run of it, for shapes it otherwise waits on forever (the stale
run reaper would fail such a run only an hour later):

- a ``for_each`` body where no block is fed only by the for_each's ``item`` handle: an
  iteration starts at those blocks, so it would have nothing to run and the for_each
  would wait for iterations that never end;
- an edge leaving a loop from a member other than a router: a loop member runs only
  when the loop reaches it, and a block after the loop that waits on one the loop never
  reached (or is still going round) waits forever. A loop hands its result on through
  its router, which runs on every round and decides when the loop is over.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from engine.blocks.registry import kind_of
from engine.errors import FieldError, Invalid
from engine.graph.model import Graph

Loc = tuple[str | int, ...]


def check_shapes(graph: Graph, loc: Loc = ()) -> None:
    """Raise :class:`Invalid` naming every block in a shape whose runs could never end."""
    errors = list(shape_errors(graph, loc))
    if errors:
        raise Invalid("the graph is invalid", errors=errors)


def shape_errors(graph: Graph, loc: Loc = ()) -> Iterator[FieldError]:
    index = {b.id: i for i, b in enumerate(graph.blocks)}
    yield from _bodies_without_entry(graph, loc, index)
    yield from _edges_leaving_loops(graph, loc)


def _bodies_without_entry(graph: Graph, loc: Loc, index: Mapping[str, int]) -> Iterator[FieldError]:
    for fe in graph.blocks:
        if not kind_of(fe.type).fans_out:
            continue
        body = [str(b) for b in fe.config.get("body") or []]
        entries = [
            b
            for b in body
            if graph.incoming(b)
            and all(e.source == fe.id and e.source_handle == "item" for e in graph.incoming(b))
        ]
        if not entries:
            yield FieldError(
                loc=(*loc, "blocks", index[fe.id], "config", "body"),
                msg=f"for_each {fe.id!r}: no block of its body is fed only by its 'item' "
                "handle, so an iteration would have nothing to start with",
            )


def _edges_leaving_loops(graph: Graph, loc: Loc) -> Iterator[FieldError]:
    loops = [comp for comp in graph._sccs if graph._is_loop(comp)]
    for j, e in enumerate(graph.edges):
        if e.target in graph.cyclic_blocks or kind_of(graph.by_id[e.source].type).routes:
            continue  # a block on a loop runs on every activation: it waits for nothing
        if e.source_handle == "item" and kind_of(graph.by_id[e.source].type).fans_out:
            continue  # into the body, which runs on each of the for_each's activations
        comp = next((c for c in loops if e.source in c), None)
        if comp is None:
            continue
        yield FieldError(
            loc=(*loc, "edges", j),
            msg=f"block {e.target!r} is fed by {e.source!r} from inside the loop "
            f"{sorted(comp)}: only a router of the loop may feed blocks after it",
        )
