"""Prometheus metrics of the API process."""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram

from api.engine_metrics import EngineCollector, register_engine_metrics


@dataclass
class ApiMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    engine: EngineCollector | None = None


def install_metrics(app: Flask) -> None:
    reg = CollectorRegistry()
    m = ApiMetrics(
        registry=reg,
        requests=Counter(
            "quorum_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=reg,
        ),
        latency=Histogram(
            "quorum_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=reg,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        ),
    )
    app.extensions["quorum_metrics"] = m
    runtime = app.extensions["quorum"]
    m.engine = register_engine_metrics(
        reg, runtime.db, outbox_after_s=runtime.settings.outbox_after_s
    )

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _observe(resp: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        m.requests.labels(request.method, route, str(resp.status_code)).inc()
        if "started" in g:
            m.latency.labels(request.method, route).observe(time.perf_counter() - g.started)
        return resp
