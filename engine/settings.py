"""One typed settings object, read from ``QUORUM_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A ``QUORUM_*`` variable holds a value of the wrong shape."""


def _default_data_dir() -> str:
    return str(Path.cwd() / ".data")


@dataclass(frozen=True, kw_only=True)
class Settings:
    # Empty database/broker URLs mean the embedded default, derived from ``data_dir``:
    # SQLite for rows and kombu's filesystem transport for messages, so a bare machine runs.
    data_dir: str = field(default_factory=_default_data_dir)
    database_url: str = ""
    broker_url: str = ""
    redis_url: str = ""
    # The broker queue the API publishes to and workers consume; separate deployments
    # (or test sessions) sharing one Redis keep apart by name.
    queue: str = "quorum"
    functions: str = ""
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = 1_048_576
    max_json_depth: int = 32
    max_blocks_per_graph: int = 200
    max_for_each_items: int = 10_000
    # What one tenant's request may store or compute (see engine.limits).
    max_for_each_steps: int = 20_000  # items x body blocks of one for_each step
    max_step_output_bytes: int = 1_048_576
    max_run_stored_bytes: int = 67_108_864  # step inputs and outputs of one run
    max_routes_per_router: int = 50
    max_active_runs_per_org: int = 1_000  # not started, started or running; 0: no limit
    # Requests per minute per API key (a fixed one-minute window); 0 turns limiting off.
    # Counted in Redis when ``redis_url`` is set, else in each API process's memory.
    rate_limit_per_minute: int = 1200
    # How long an API process may keep a key it checked without reading it again; 0 reads
    # every request's key. Revocations by ``quorum keys revoke`` reach it at once anyway
    # (PostgreSQL only; see api.keycache); this bounds any other change of a key.
    auth_cache_s: float = 10.0
    # A pending/queued row older than this is assumed lost by the broker and re-published.
    outbox_after_s: float = 60.0
    # A running row is leased to its worker for this long, and the worker renews the lease
    # every third of it while it works on the row (engine.leases); a row whose lease ran
    # out (its host vanished, is cut off, or gave the row up) is taken over.
    lease_s: float = 30.0
    # This worker's host in its identity ("host:pid"); empty: the hostname, plus the
    # network namespace when it is not the machine's own (another host, for the leases).
    worker_host: str = ""
    stale_run_after_s: float = 3600.0
    provider: str = "local"
    provider_base_url: str = ""
    provider_api_key: str = ""
    provider_model: str = "local-1"
    provider_timeout_s: float = 60.0
    worker_concurrency: int = 2
    # Each worker serves its Prometheus metrics (queue wait, block run time, consensus
    # samples) on this port, for all its pool processes; 0: no metrics server.
    worker_metrics_port: int = 0
    # Threads of each API process for ordinary requests (event streams need none).
    api_threads: int = 4
    # Open event streams per API key and per API process (api.streams); past them, 429.
    max_streams_per_key: int = 20
    max_streams_per_process: int = 1_000
    # A worker runs up to this many ready successors of a step itself, in a row, before
    # handing the next one to the broker (0: always publish).
    inline_successors: int = 100
    # Successors run in-process are settled together, one commit for as many as finish
    # within this many milliseconds of the first (0: one commit per step). A crash re-runs
    # the uncommitted ones; the run's row stays locked meanwhile, so keep it short.
    chain_batch_ms: int = 50
    # Test-only fault points (e.g. "api.after_commit"): never set in production.
    fault_points: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"QUORUM_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        values.update(overrides)
        return cls(**values)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir) / 'quorum.sqlite3'}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def is_embedded_broker(self) -> bool:
        return self.effective_broker_url.startswith("filesystem://")

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    def has_fault(self, name: str) -> bool:
        return name in {p.strip() for p in self.fault_points.split(",") if p.strip()}


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", "str")
    try:
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as exc:
        raise SettingsError(f"QUORUM_{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw
