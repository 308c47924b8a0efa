"""A run's graph, parsed once per process.

A run's config (its workflow version's graph and settings) never changes once the run is
created, so the graph parsed from it is shared by every call site that loads the run: an
LRU keyed by a digest of the config (forks and evaluation runs of one version share it).
The Graph is immutable; its lazily computed indexes are deterministic, so sharing it
between threads is safe.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from engine.graph.model import Graph
from engine.graph.parse import parse_graph

# Stored graphs were checked against the per-organization limit when saved; this bound
# only keeps a corrupted row from parsing without end.
STORED_MAX_BLOCKS = 10_000
SIZE = 256

_lock = threading.Lock()
_graphs: OrderedDict[str, Graph] = OrderedDict()


def config_digest(config: Mapping[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def run_graph(config: Mapping[str, Any]) -> Graph:
    """The graph of a run's ``config`` (a stored, immutable config), parsed at most once."""
    key = config_digest(config)
    with _lock:
        graph = _graphs.get(key)
        if graph is not None:
            _graphs.move_to_end(key)
            return graph
    graph = parse_graph(config, max_blocks=STORED_MAX_BLOCKS)
    with _lock:
        _graphs[key] = graph
        while len(_graphs) > SIZE:
            _graphs.popitem(last=False)
    return graph


def max_visits(config: Mapping[str, Any]) -> int:
    """How often one block may run in one turn (the run's ``max_block_visits`` setting)."""
    return int((config.get("settings") or {}).get("max_block_visits", 10))


def clear() -> None:
    with _lock:
        _graphs.clear()
