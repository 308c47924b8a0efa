"""A workflow graph as values: blocks, edges, and the topology questions the scheduler asks.

Built by :func:`engine.graph.parse.parse_graph`, which checks it first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


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
