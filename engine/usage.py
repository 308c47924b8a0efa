"""Model usage kept on the run row: one entry per (provider, model)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from engine.providers.base import ModelResponse


def add_usage(entries: Sequence[dict[str, Any]], calls: Iterable[ModelResponse]) -> list[Any]:
    """A new list (so the ORM sees the change) with ``calls`` added."""
    out = [dict(e) for e in entries]
    for c in calls:
        key = (c.provider, c.model)
        entry = next((e for e in out if (e["provider"], e["model"]) == key), None)
        if entry is None:
            entry = {
                "provider": c.provider,
                "model": c.model,
                "calls": 0,
                "prompt": 0,
                "completion": 0,
                "latency_ms": 0,
            }
            out.append(entry)
        entry["calls"] += 1
        entry["prompt"] += c.prompt_tokens
        entry["completion"] += c.completion_tokens
        entry["latency_ms"] += c.latency_ms
    return out
