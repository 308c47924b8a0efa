"""Workflow graphs: parsing, validation and the topology questions the scheduler asks."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from engine.blocks import BLOCK_ID, BLOCK_TYPES, HANDLE_ID, check_config, handles_of
from engine.errors import FieldError, Invalid


@dataclass(frozen=True, kw_only=True)
class Block:
    id: str
    type: str
    name: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "name": self.name, "config": dict(self.config)}


@dataclass(frozen=True, kw_only=True)
class Edge:
    source: str
    source_handle: str
    target: str
    target_handle: str

    def as_dict(self) -> dict[str, str]:
        return {
            "source": self.source,
            "source_handle": self.source_handle,
            "target": self.target,
            "target_handle": self.target_handle,
        }

    def label(self) -> str:
        return f"{self.source}.{self.source_handle}->{self.target}.{self.target_handle}"


@dataclass(frozen=True, kw_only=True)
class Graph:
    blocks: tuple[Block, ...]
    edges: tuple[Edge, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "blocks": [b.as_dict() for b in self.blocks],
            "edges": [e.as_dict() for e in self.edges],
        }

    @cached_property
    def by_id(self) -> dict[str, Block]:
        return {b.id: b for b in self.blocks}

    @cached_property
    def _incoming(self) -> dict[str, tuple[Edge, ...]]:
        acc: dict[str, list[Edge]] = defaultdict(list)
        for e in self.edges:
            acc[e.target].append(e)
        return {k: tuple(v) for k, v in acc.items()}

    @cached_property
    def _outgoing(self) -> dict[str, tuple[Edge, ...]]:
        acc: dict[str, list[Edge]] = defaultdict(list)
        for e in self.edges:
            acc[e.source].append(e)
        return {k: tuple(v) for k, v in acc.items()}

    def incoming(self, block_id: str) -> tuple[Edge, ...]:
        return self._incoming.get(block_id, ())

    def outgoing(self, block_id: str) -> tuple[Edge, ...]:
        return self._outgoing.get(block_id, ())

    @cached_property
    def start_blocks(self) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if b.type == "start")

    @cached_property
    def body_owner(self) -> dict[str, str]:
        """Block id -> id of the ``for_each`` whose body it belongs to."""
        owner: dict[str, str] = {}
        for b in self.blocks:
            if b.type == "for_each":
                for member in b.config.get("body") or []:
                    owner[str(member)] = b.id
        return owner

    def collect_block(self, for_each_id: str) -> str:
        block = self.by_id[for_each_id]
        body = [str(b) for b in block.config.get("body") or []]
        if block.config.get("collect"):
            return str(block.config["collect"])
        # Without an explicit choice, gather the body block that feeds nothing else in the body.
        sinks = [b for b in body if not any(e.target in body for e in self.outgoing(b))]
        return sinks[-1] if sinks else body[-1]

    @cached_property
    def cyclic_blocks(self) -> frozenset[str]:
        """Blocks on some cycle (members of a strongly connected component with a loop)."""
        return frozenset(b for comp in self._sccs for b in comp if self._is_loop(comp))

    def _is_loop(self, comp: frozenset[str]) -> bool:
        if len(comp) > 1:
            return True
        (only,) = comp
        return any(e.target == only for e in self.outgoing(only))

    @cached_property
    def _sccs(self) -> list[frozenset[str]]:
        # Tarjan's algorithm, iterative so deep chains cannot hit the recursion limit.
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        result: list[frozenset[str]] = []
        counter = 0
        for root in self.by_id:
            if root in index:
                continue
            work: list[tuple[str, int]] = [(root, 0)]
            while work:
                node, i = work.pop()
                if i == 0:
                    index[node] = low[node] = counter
                    counter += 1
                    stack.append(node)
                    on_stack.add(node)
                succ = [e.target for e in self.outgoing(node) if e.target in self.by_id]
                if i < len(succ):
                    work.append((node, i + 1))
                    nxt = succ[i]
                    if nxt not in index:
                        work.append((nxt, 0))
                    elif nxt in on_stack:
                        low[node] = min(low[node], index[nxt])
                    continue
                for s in succ:
                    if s in on_stack:
                        low[node] = min(low[node], low[s])
                if low[node] == index[node]:
                    comp: set[str] = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == node:
                            break
                    result.append(frozenset(comp))
        return result

    def _sources(self, block_id: str) -> list[str]:
        """Direct upstream blocks: edge sources, plus the body of a for_each whose
        ``results`` (gathered from that body) flow in; the ``item`` handle carries none."""
        found: list[str] = []
        for e in self.incoming(block_id):
            found.append(e.source)
            source = self.by_id.get(e.source)
            if source is not None and source.type == "for_each" and e.source_handle != "item":
                found.extend(self._body_closure(source.id))
        return found

    def _body_closure(self, for_each_id: str) -> list[str]:
        """Every block of a for_each's body, nested for_each bodies included."""
        members: list[str] = []
        todo = [for_each_id]
        while todo:
            fe = self.by_id.get(todo.pop())
            if fe is None or fe.type != "for_each":
                continue
            for m in (str(x) for x in fe.config.get("body") or []):
                if m not in members and m != for_each_id:
                    members.append(m)
                    todo.append(m)
        return members

    def ancestors(self, block_id: str) -> set[str]:
        seen: set[str] = set()
        todo = self._sources(block_id)
        while todo:
            b = todo.pop()
            if b in seen:
                continue
            seen.add(b)
            todo.extend(self._sources(b))
            if b in self.body_owner:
                todo.append(self.body_owner[b])
        if block_id in self.body_owner:
            owner = self.body_owner[block_id]
            if owner not in seen:
                seen.add(owner)
                seen |= self.ancestors(owner)
        seen.discard(block_id)
        return seen


def fingerprint(block: Block) -> str:
    raw = json.dumps({"type": block.type, "config": block.config}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def upstream_drift(old: Graph, new: Graph, block_id: str) -> dict[str, list[str]]:
    """Blocks and edges upstream of ``block_id`` that differ between ``old`` and ``new``.

    The upstream subgraph is every ancestor's type and config plus the edges among them and
    into the block, taken over both graphs; the block's own config is deliberately excluded.
    """
    ancestors = (old.ancestors(block_id) if block_id in old.by_id else set()) | (
        new.ancestors(block_id) if block_id in new.by_id else set()
    )
    blocks = sorted(
        b
        for b in ancestors
        if (b in old.by_id) != (b in new.by_id)
        or (b in old.by_id and fingerprint(old.by_id[b]) != fingerprint(new.by_id[b]))
    )
    scope = ancestors | {block_id}

    def relevant(g: Graph) -> set[str]:
        return {e.label() for e in g.edges if e.target in scope and e.source in ancestors}

    old_edges, new_edges = relevant(old), relevant(new)
    return {"blocks": blocks, "edges": sorted(old_edges ^ new_edges)}


BLOCK_FIELDS = frozenset({"id", "type", "name", "config"})
EDGE_FIELDS = frozenset({"source", "source_handle", "target", "target_handle"})
MAX_BLOCK_NAME = 200


def parse_graph(
    data: Mapping[str, Any],
    *,
    max_blocks: int = 200,
    loc: tuple[str | int, ...] = (),
    strict: bool = False,
) -> Graph:
    """Build a :class:`Graph` or raise :class:`Invalid` naming every offending block and edge.

    ``strict`` (graphs sent by a client) also refuses fields a block or an edge does not
    have; stored graphs are read leniently.
    """
    errors: list[FieldError] = []
    raw_blocks = data.get("blocks")
    raw_edges = data.get("edges", [])
    if not isinstance(raw_blocks, list):
        raise Invalid(
            "the graph is invalid",
            errors=[FieldError(loc=(*loc, "blocks"), msg="a list is required")],
        )
    if not isinstance(raw_edges, list):
        raise Invalid(
            "the graph is invalid",
            errors=[FieldError(loc=(*loc, "edges"), msg="a list is required")],
        )
    if len(raw_blocks) > max_blocks:
        raise Invalid(
            f"a graph may hold at most {max_blocks} blocks",
            errors=[FieldError(loc=(*loc, "blocks"), msg=f"at most {max_blocks} blocks")],
        )
    blocks: list[Block] = []
    seen: dict[str, int] = {}
    for i, rb in enumerate(raw_blocks):
        bloc = (*loc, "blocks", i)
        if not isinstance(rb, Mapping):
            errors.append(FieldError(loc=bloc, msg="a block object is required"))
            continue
        if strict:
            errors.extend(
                FieldError(loc=(*bloc, str(k)), msg="unknown field")
                for k in rb
                if k not in BLOCK_FIELDS
            )
        bid, btype, config = rb.get("id"), rb.get("type"), rb.get("config", {})
        if not isinstance(bid, str) or not BLOCK_ID.match(bid):
            errors.append(
                FieldError(loc=(*bloc, "id"), msg="block id must match ^[a-z][a-z0-9_-]{0,63}$")
            )
            continue
        if bid in seen:
            errors.append(FieldError(loc=(*bloc, "id"), msg=f"duplicate block id {bid!r}"))
            continue
        seen[bid] = i
        if not isinstance(btype, str) or btype not in BLOCK_TYPES:
            errors.append(FieldError(loc=(*bloc, "type"), msg=f"unknown block type {btype!r}"))
            continue
        if not isinstance(config, Mapping):
            errors.append(FieldError(loc=(*bloc, "config"), msg="must be an object"))
            continue
        name = rb.get("name")
        if name is not None and not isinstance(name, str):
            errors.append(FieldError(loc=(*bloc, "name"), msg="must be a string"))
        elif isinstance(name, str) and len(name) > MAX_BLOCK_NAME:
            errors.append(
                FieldError(loc=(*bloc, "name"), msg=f"at most {MAX_BLOCK_NAME} characters")
            )
        for e in check_config(str(btype), config):
            errors.append(FieldError(loc=(*bloc, *e.loc), msg=e.msg))
        blocks.append(
            Block(
                id=bid,
                type=str(btype),
                name=name if isinstance(name, str) else None,
                config=dict(config),
            )
        )
    by_id = {b.id: b for b in blocks}
    edges: list[Edge] = []
    for j, re_ in enumerate(raw_edges):
        eloc = (*loc, "edges", j)
        if not isinstance(re_, Mapping):
            errors.append(FieldError(loc=eloc, msg="an edge object is required"))
            continue
        if strict:
            errors.extend(
                FieldError(loc=(*eloc, str(k)), msg="unknown field")
                for k in re_
                if k not in EDGE_FIELDS
            )
        fields_ = {k: re_.get(k) for k in ("source", "source_handle", "target", "target_handle")}
        bad = [k for k, v in fields_.items() if not isinstance(v, str)]
        if bad:
            errors.extend(FieldError(loc=(*eloc, k), msg="a string is required") for k in bad)
            continue
        edge = Edge(**{k: str(v) for k, v in fields_.items()})
        ok = True
        for end, handle_key, side in (
            ("source", "source_handle", "outputs"),
            ("target", "target_handle", "inputs"),
        ):
            block = by_id.get(getattr(edge, end))
            if block is None:
                if getattr(edge, end) not in seen:
                    errors.append(
                        FieldError(loc=(*eloc, end), msg=f"unknown block {getattr(edge, end)!r}")
                    )
                ok = False
                continue
            handles = handles_of(block.type, block.config)
            allowed = getattr(handles, side)
            handle = getattr(edge, handle_key)
            if (allowed is not None and handle not in allowed) or not HANDLE_ID.match(handle):
                errors.append(
                    FieldError(
                        loc=(*eloc, handle_key),
                        msg=f"block {block.id!r} has no {side[:-1]} handle {handle!r}",
                    )
                )
                ok = False
        if ok:
            edges.append(edge)
    if not any(b.type == "start" for b in blocks) and not errors:
        errors.append(FieldError(loc=(*loc, "blocks"), msg="a start block is required"))
    if errors:
        raise Invalid("the graph is invalid", errors=errors)
    graph = Graph(blocks=tuple(blocks), edges=tuple(edges))
    errors.extend(_structure_errors(graph, loc, {b: i for b, i in seen.items()}))
    if errors:
        raise Invalid("the graph is invalid", errors=errors)
    return graph


def _structure_errors(
    graph: Graph, loc: tuple[str | int, ...], index: Mapping[str, int]
) -> Iterable[FieldError]:
    edge_index = {id(e): j for j, e in enumerate(graph.edges)}
    owner = graph.body_owner
    for b in graph.blocks:
        if b.type == "for_each":
            for member in b.config.get("body") or []:
                m = graph.by_id.get(str(member))
                if m is None or m.type in ("start", "end", "human_input") or m.id == b.id:
                    yield FieldError(
                        loc=(*loc, "blocks", index[b.id], "config", "body"),
                        msg=f"{member!r} cannot be a body block",
                    )
    for e in graph.edges:
        src_scope = owner.get(e.source)
        dst_scope = owner.get(e.target)
        into_body = e.source == dst_scope and e.source_handle == "item"
        if src_scope != dst_scope and not into_body:
            yield FieldError(
                loc=(*loc, "edges", edge_index[id(e)]),
                msg="an edge may not cross a for_each body boundary"
                " except from the for_each's 'item' handle",
            )
        elif (
            e.source_handle == "item"
            and graph.by_id[e.source].type == "for_each"
            and dst_scope != e.source
        ):
            yield FieldError(
                loc=(*loc, "edges", edge_index[id(e)]),
                msg="the 'item' handle feeds only the for_each's body",
            )
    # A cycle must pass through a router: a strongly connected component without one
    # would wait on itself forever.
    for comp in graph._sccs:
        if graph._is_loop(comp) and not any(graph.by_id[b].type == "router" for b in comp):
            members = sorted(comp)
            bad = [j for j, e in enumerate(graph.edges) if e.source in comp and e.target in comp]
            yield FieldError(
                loc=(*loc, "edges", bad[0] if bad else 0),
                msg=f"cycle without a router through blocks {members}",
            )
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
