"""Turning what the worker wing does into worker metrics (``engine.ports.Metrics``).

Each helper is called by one line of the worker wing (engine.worker: the claim, the
settles, a consensus sample's model call) and never raises: a metrics fault must not
fail the work it observes.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from engine.clock import as_utc
from engine.execute import BlockFailed, Outcome
from engine.ports import Metrics
from engine.worker.context import AwaitInput, FanOut, FanOutConsensus

log = logging.getLogger("quorum.observe")

# Results of a block that neither completed nor failed yet (engine.orchestrator).
_KINDS = {"steps": "step", "block_executions": "execution", "consensus_samples": "sample"}
_OUTCOMES = {"FanOut": "fanned_out", "FanOutConsensus": "fanned_out", "AwaitInput": "awaiting"}


def outcome_of(result: Any) -> str:
    if isinstance(result, BlockFailed):
        return "failed"
    if isinstance(result, Outcome):
        return "completed"
    if isinstance(result, FanOut | FanOutConsensus):
        return "fanned_out"
    if isinstance(result, AwaitInput):
        return "awaiting"
    return "other"


def _seconds(start: datetime | None, end: datetime) -> float | None:
    begun, ended = as_utc(start), as_utc(end)
    if begun is None or ended is None:
        return None
    return max(0.0, (ended - begun).total_seconds())


def observe_claim(metrics: Metrics, model: Any, claimed: Any, now: datetime) -> None:
    """Queue wait of a claimed row: from ``queued_at`` (else created) to the claim."""
    if claimed is None or claimed.row is None:
        return
    row = claimed.row
    try:
        waited = _seconds(row.queued_at or row.created_at, now)
        if waited is not None:
            kind = _KINDS.get(model.__tablename__, model.__tablename__)
            block_type = str(getattr(row, "block_type", "") or "")
            metrics.observe_queue_wait(kind=kind, block_type=block_type, seconds=waited)
    except Exception:
        log.exception("queue wait not observed")


def observe_block_run(metrics: Metrics, job: Any, result: Any, now: datetime) -> None:
    """Run time of a claimed block: from its claim (``job.started_at``) to its result."""
    try:
        took = _seconds(job.started_at, now)
        if took is not None:
            outcome = outcome_of(result)
            metrics.observe_block_run(block_type=job.block.type, outcome=outcome, seconds=took)
    except Exception:
        log.exception("block run not observed")


def observe_sample(metrics: Metrics, owner: Any, response: Any) -> None:
    """One consensus sample (a model call of a consensus block) ended."""
    try:
        failure = response.error_type if isinstance(response, BlockFailed) else None
        metrics.count_sample(block_type=owner.block.type, failure=failure)
    except Exception:
        log.exception("consensus sample not observed")
