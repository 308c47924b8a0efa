"""Whether a block's upstream changed between two graphs (a block execution refuses drift).

A block differs when its type or config differs (its :func:`fingerprint`); its ``name`` is a
label and does not count. An edge is its four ids, so an edge is only added or removed.
"""

from __future__ import annotations

import hashlib
import json

from engine.graph.model import Block, Graph


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
