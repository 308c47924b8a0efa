"""What changed between two workflow graphs: blocks and edges added, removed and changed.

The same notion of difference as the drift a block execution refuses with (``409``, see
:func:`engine.graph.drift.upstream_drift`), taken over the whole graph instead of one block's
upstream: a block differs when its type or config differs (its :func:`fingerprint`; a
block's ``name`` is a label and does not count), and an edge is its four ids, so an edge is
only ever added or removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.graph.drift import fingerprint
from engine.graph.model import Graph
from engine.graph.parse import parse_graph
from engine.workflows import get_version, get_workflow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True, kw_only=True)
class GraphDiff:
    blocks_added: tuple[str, ...]
    blocks_removed: tuple[str, ...]
    blocks_changed: tuple[str, ...]
    edges_added: tuple[str, ...]
    edges_removed: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        return not (
            self.blocks_added
            or self.blocks_removed
            or self.blocks_changed
            or self.edges_added
            or self.edges_removed
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "blocks": {
                "added": list(self.blocks_added),
                "removed": list(self.blocks_removed),
                "changed": list(self.blocks_changed),
            },
            "edges": {"added": list(self.edges_added), "removed": list(self.edges_removed)},
        }


def graph_diff(old: Graph, new: Graph) -> GraphDiff:
    """From ``old`` to ``new``: ids of blocks, labels of edges (``a.out->b.in``), sorted."""
    old_blocks, new_blocks = old.by_id, new.by_id
    old_edges = {e.label() for e in old.edges}
    new_edges = {e.label() for e in new.edges}
    return GraphDiff(
        blocks_added=tuple(sorted(new_blocks.keys() - old_blocks.keys())),
        blocks_removed=tuple(sorted(old_blocks.keys() - new_blocks.keys())),
        blocks_changed=tuple(
            sorted(
                b
                for b in old_blocks.keys() & new_blocks.keys()
                if fingerprint(old_blocks[b]) != fingerprint(new_blocks[b])
            )
        ),
        edges_added=tuple(sorted(new_edges - old_edges)),
        edges_removed=tuple(sorted(old_edges - new_edges)),
    )


@dataclass(frozen=True, kw_only=True)
class DraftDiff:
    workflow_id: str
    version: int
    diff: GraphDiff


# Stored graphs were validated when they were written (the runs read them the same way).
_STORED = 10_000


def diff_draft(s: Session, org_id: str, workflow_id: str, version: int | None) -> DraftDiff:
    """The workflow's draft against one of its versions (default: the latest)."""
    wf = get_workflow(s, org_id, workflow_id)
    number = wf.latest_version if version is None else version
    published = get_version(s, org_id, workflow_id, number)
    diff = graph_diff(
        parse_graph(published.graph, max_blocks=_STORED),
        parse_graph(wf.draft, max_blocks=_STORED),
    )
    return DraftDiff(workflow_id=wf.id, version=published.number, diff=diff)
