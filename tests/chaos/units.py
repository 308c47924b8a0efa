"""The chaos run's units of work, and a careful client that submits them over HTTP.

Every unit is one POST with its own ``Idempotency-Key``, retried with that key until it
gets a 2xx (a 503 while PostgreSQL restarts, a 409 while the key is in progress, a broken
connection...). Every function block is ``record`` (tests/support/chaos_functions.py), and
each unit's values name the unit, so the side table tells which units ran twice.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

EXECUTIONS = "/v1/workflows/blocks/executions"
RUNS = "/v1/workflows/runs"


def _start(handle: str = "x") -> dict[str, Any]:
    return {"id": "start", "type": "start", "config": {"inputs": {handle: {"type": "json"}}}}


def _record(block_id: str, tag: str, work_s: float = 0.0) -> dict[str, Any]:
    params = {"block": tag, "sleep": work_s}
    return {"id": block_id, "type": "function", "config": {"function": "record", "params": params}}


def _edge(source: str, sh: str, target: str, th: str) -> dict[str, str]:
    return {"source": source, "source_handle": sh, "target": target, "target_handle": th}


def chain_graph(n: int, work_s: float = 0.0) -> dict[str, Any]:
    blocks = [
        _start(),
        *(_record(f"s{i}", f"s{i}", work_s) for i in range(n)),
        {"id": "end", "type": "end"},
    ]
    edges, prev, handle = [], "start", "x"
    for i in range(n):
        edges.append(_edge(prev, handle, f"s{i}", "value"))
        prev, handle = f"s{i}", "output"
    edges.append(_edge(prev, handle, "end", "y"))
    return {"blocks": blocks, "edges": edges}


def for_each_graph(tag: str, work_s: float = 0.0) -> dict[str, Any]:
    """start.x (a list) -> each (for_each, body: f) -> end."""
    return {
        "blocks": [
            _start(),
            {"id": "each", "type": "for_each", "config": {"body": ["f"]}},
            _record("f", tag, work_s),
            {"id": "end", "type": "end"},
        ],
        "edges": [
            _edge("start", "x", "each", "items"),
            _edge("each", "item", "f", "value"),
            _edge("each", "results", "end", "all"),
        ],
    }


SCHEMA = {
    "type": "object",
    "properties": {"invoice_number": {"type": "string"}, "total": {"type": "number"}},
}


def extract_graph() -> dict[str, Any]:
    return {
        "blocks": [
            _start("doc"),
            {"id": "x", "type": "extract", "config": {"schema": SCHEMA}},
            {"id": "end", "type": "end"},
        ],
        "edges": [_edge("start", "doc", "x", "document"), _edge("x", "output", "end", "y")],
    }


@dataclass(frozen=True, kw_only=True)
class Unit:
    kind: str  # "execution", "chain", "consensus", "for_each"
    key: str  # the Idempotency-Key, also the unit's name in the side table
    path: str
    body: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Sources:
    """What the units point at, created before the faults start."""

    chain_workflow: str
    for_each_workflow: str
    execution_run: str  # a for_each run with one iteration per execution unit
    consensus_run: str


def plan(sources: Sources, config: Any, rng: random.Random) -> list[Unit]:
    units: list[Unit] = []
    for i in range(config.executions):
        body = {
            "run_id": sources.execution_run,
            "block_id": "f",
            "step_id": f"each[{i}]/f",
            "check_eligibility": False,
        }
        units.append(Unit(kind="execution", key=f"e{i}", path=EXECUTIONS, body=body))
    for i in range(config.consensus):
        body = {
            "run_id": sources.consensus_run,
            "block_id": "x",
            "n_consensus": 3,
            "check_eligibility": False,
        }
        units.append(Unit(kind="consensus", key=f"q{i}", path=EXECUTIONS, body=body))
    for i in range(config.chain_runs):
        key = f"c{i}"
        body = {
            "workflow_id": sources.chain_workflow,
            "inputs": {"x": key},
            "metadata": {"chaos_key": key},
        }
        units.append(Unit(kind="chain", key=key, path=RUNS, body=body))
    for i in range(config.for_each_runs):
        key = f"f{i}"
        items = [f"{key}:{j}" for j in range(config.items)]
        body = {
            "workflow_id": sources.for_each_workflow,
            "inputs": {"x": items},
            "metadata": {"chaos_key": key},
        }
        units.append(Unit(kind="for_each", key=key, path=RUNS, body=body))
    rng.shuffle(units)
    return units


@dataclass
class Submitter:
    """POSTs every unit until a 2xx, from ``clients`` threads, never blocking on a retry."""

    base_url: str
    api_key: str
    clients: int
    rate: float | None = None  # first POSTs per second
    ids: dict[str, str] = field(default_factory=dict)  # unit key -> the id answered
    statuses: Counter[str] = field(default_factory=Counter)
    posts: int = 0
    # Keys are sent with a per-run prefix: a rerun on the same database starts afresh.
    namespace: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, units: list[Unit], *, deadline: float) -> None:
        start, gap = time.monotonic(), 1.0 / self.rate if self.rate else 0.0
        ready = [(start + i * gap, i, u, 0) for i, u in enumerate(units)]
        heapq.heapify(ready)
        cond = threading.Condition(self._lock)
        pending = [len(units)]
        failures: list[str] = []

        def next_unit() -> tuple[int, Unit, int] | None:
            with cond:
                while pending[0] and not failures and time.monotonic() < deadline:
                    now = time.monotonic()
                    if ready and ready[0][0] <= now:
                        _, n, unit, tries = heapq.heappop(ready)
                        return n, unit, tries
                    cond.wait(min(0.2, ready[0][0] - now) if ready else 0.2)
                return None

        def worker() -> None:
            client = httpx.Client(
                base_url=self.base_url,
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=30,
            )
            try:
                while (got := next_unit()) is not None:
                    n, unit, tries = got
                    try:
                        answer = self._post(client, unit)
                    except AssertionError as exc:
                        failures.append(str(exc))
                        return
                    with cond:
                        if answer is not None:
                            self.ids[unit.key] = answer
                            pending[0] -= 1
                        else:
                            backoff = min(5.0, 0.1 * 2 ** min(tries, 6)) * random.uniform(0.5, 1.5)
                            heapq.heappush(ready, (time.monotonic() + backoff, n, unit, tries + 1))
                        cond.notify_all()
            finally:
                client.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise AssertionError(failures[0])
        if pending[0]:
            raise AssertionError(f"{pending[0]} units never got a 2xx before the deadline")

    def _post(self, client: httpx.Client, unit: Unit) -> str | None:
        headers = {"Idempotency-Key": f"{self.namespace}-{unit.key}"}
        try:
            r = client.post(unit.path, json=unit.body, headers=headers)
        except httpx.HTTPError as exc:
            self._count(type(exc).__name__)
            return None
        self._count(str(r.status_code))
        if 200 <= r.status_code < 300:
            return str(r.json()["id"])
        if r.status_code in (400, 401, 404, 413, 415, 422):
            raise AssertionError(f"{unit.path} {unit.key}: {r.status_code} {r.text}")
        return None  # 409 (the key in progress), 429, 5xx: the same key again, later

    def _count(self, status: str) -> None:
        with self._lock:
            self.posts += 1
            self.statuses[status] += 1
