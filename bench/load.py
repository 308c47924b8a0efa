"""A closed-loop HTTP load generator: N client threads, each with its own keep-alive
connection, sending one request after another until the time is up (loopback only)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.report import percentile


@dataclass(kw_only=True)
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0
    # Wall-clock time when the clients were let go (comparable with times the workers write).
    started_at: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        ok = self.requests - self.errors
        return ok / self.elapsed_s if self.elapsed_s else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q) if self.latencies_ms else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p(50), 2),
            "p99_ms": round(self.p(99), 2),
            "statuses": self.statuses,
        }


def hammer(
    base_url: str,
    path: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    clients: int = 16,
    seconds: float = 5.0,
    max_requests: int = 200_000,
) -> LoadResult:
    if not base_url.startswith("http://127.0.0.1:"):
        raise ValueError("the load generator only targets loopback")
    lock = threading.Lock()
    result = LoadResult()
    gate = threading.Barrier(clients + 1)
    stop_at = [0.0]
    budget = [max_requests]

    def client() -> None:
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        with httpx.Client(base_url=base_url, headers=headers or {}, timeout=30) as http:
            http.get("/healthz")  # open the connection before the clock starts
            gate.wait()
            while time.perf_counter() < stop_at[0]:
                with lock:
                    if budget[0] <= 0:
                        break
                    budget[0] -= 1
                t0 = time.perf_counter()
                try:
                    status = http.post(path, json=body).status_code
                except httpx.HTTPError:
                    status = 0
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
        with lock:
            result.latencies_ms.extend(latencies)
            for k, v in statuses.items():
                result.statuses[k] = result.statuses.get(k, 0) + v
                if not 200 <= k < 300:
                    result.errors += v

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    result.started_at = time.time()
    gate.wait()
    for t in threads:
        t.join()
    result.elapsed_s = time.perf_counter() - start
    return result
