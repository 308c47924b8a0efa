"""engine.graph.cache: a run's graph is parsed once per config."""

from __future__ import annotations

from typing import Any

import pytest

from engine.graph import cache


def _config(end: str = "end") -> dict[str, Any]:
    return {
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
            {"id": end, "type": "end", "config": {}},
        ],
        "edges": [{"source": "start", "source_handle": "x", "target": end, "target_handle": "x"}],
        "settings": {"max_block_visits": 4},
    }


def test_a_config_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    cache.clear()
    parsed: list[int] = []
    real = cache.parse_graph

    def counting(*args: Any, **kwargs: Any) -> Any:
        parsed.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "parse_graph", counting)
    first = cache.run_graph(_config())
    again = cache.run_graph(_config())  # an equal config read from another row
    other = cache.run_graph(_config("finish"))
    assert first is again and other is not first
    assert len(parsed) == 2
    assert cache.max_visits(_config()) == 4


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    cache.clear()
    monkeypatch.setattr(cache, "SIZE", 2)
    graphs = [cache.run_graph(_config(f"end{i}")) for i in range(3)]
    assert cache.run_graph(_config("end2")) is graphs[2]
    assert cache.run_graph(_config("end0")) is not graphs[0]  # evicted, parsed again
