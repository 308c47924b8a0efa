"""Rows of the result table, their statistics, the printed table and results.json."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def pair_ratio(
    engine: Sequence[float], baseline: Sequence[float], fn: Callable[[float, float], float]
) -> float | None:
    """The median over pairs (engine[i], baseline[i]) of ``fn``: each pair ran back to back,
    so machine noise that drifts over minutes cancels within a pair."""
    pairs = [fn(e, b) for e, b in zip(engine, baseline, strict=False) if b and e]
    return median(pairs)


@dataclass(kw_only=True)
class Row:
    """One comparison: the engine against its baseline, or (``peer`` set, e.g. ``"dbos"``)
    against a peer system, whose samples are then in ``peer_samples``."""

    scenario: str
    what: str
    unit: str
    engine: list[float]
    baseline: list[float] = field(default_factory=list)
    peer: str | None = None
    peer_samples: list[float] = field(default_factory=list)
    ratio: float | None = None
    ratio_label: str = ""
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def engine_median(self) -> float | None:
        return median(self.engine)

    @property
    def baseline_median(self) -> float | None:
        return median(self.baseline)

    @property
    def peer_median(self) -> float | None:
        return median(self.peer_samples)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["engine_median"] = self.engine_median
        if self.peer is None:
            # A baseline row keeps the shape results.json always had.
            del out["peer"], out["peer_samples"]
            out["baseline_median"] = self.baseline_median
        else:
            del out["baseline"]
            out["peer_median"] = self.peer_median
        return out


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:.1f} ms"
    if unit in ("statements", "commits"):
        return f"{value:g} {unit}"
    if unit == "%":
        return f"{value:+.1f} %"
    if unit.endswith("/s"):
        return f"{value:,.0f} {unit}"
    return f"{value:g} {unit}"


def fmt_ratio(row: Row) -> str:
    if row.ratio is None:
        return "—"
    return f"{row.ratio:.2f}{row.ratio_label}"


def table(rows: Sequence[Row], peer_label: str = "peer") -> str:
    """One line per row; a peer row fills the peer's column, beside the baseline's."""
    header = [
        "scenario",
        "engine (median)",
        "baseline (median)",
        f"{peer_label} (median)",
        "ratio",
        "target",
        "met",
    ]
    body = [
        [
            f"{r.scenario} {r.what}",
            fmt(r.engine_median, r.unit),
            fmt(r.baseline_median, r.unit),
            fmt(r.peer_median, r.unit),
            fmt_ratio(r),
            r.target,
            "—" if r.met is None else ("yes" if r.met else "NO"),
        ]
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body]
    return "\n".join(out)


def host() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_end": load,
    }


def write(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
