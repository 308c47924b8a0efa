"""What one tenant's request may store or compute: the limits and where they bite.

Each limit has a setting (``QUORUM_*``, :class:`engine.settings.Settings`) and one answer:

* a step's output larger than ``max_step_output_bytes``: the step fails ``output_too_large``;
* a run whose steps stored more than ``max_run_stored_bytes`` (inputs and outputs): the
  step that would pass it fails ``run_storage_exceeded``;
* a ``for_each`` whose items times body blocks pass ``max_for_each_steps``: the step fails
  ``too_many_items``, before any iteration is created;
* a router with more than ``max_routes_per_router`` routes: ``422`` when the workflow is
  saved (:func:`graph_errors`);
* more than ``max_active_runs_per_org`` runs not yet ended and not waiting (not started,
  started, running) in one organization: ``429`` on ``POST`` runs and checkpoints.

Sizes are measured where the work runs, outside any row lock; under the run's lock only
the sums are compared (:func:`charge`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.blocks.registry import kind_of
from engine.db.models import Run
from engine.errors import FieldError, QuorumError
from engine.execute import BlockFailed, Outcome
from engine.lifecycle import RunStatus
from engine.settings import Settings

# Runs that hold (or are about to hold) workers; waiting and paused runs hold nothing.
ACTIVE = (RunStatus.NOT_STARTED, RunStatus.STARTED, RunStatus.RUNNING)


class TooManyRuns(QuorumError):
    status = 429
    title = "Too Many Requests"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what its column holds, near enough)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode("utf-8", "surrogatepass"))


def measured(
    result: Outcome, inputs: Mapping[str, Any], settings: Settings
) -> Outcome | BlockFailed:
    """The outcome with its stored size, or ``output_too_large``."""
    out = json_size(result.outputs)
    if out > settings.max_step_output_bytes:
        return BlockFailed(
            "output_too_large",
            f"the output is {out} bytes; a step may store at most "
            f"{settings.max_step_output_bytes} (QUORUM_MAX_STEP_OUTPUT_BYTES)",
        )
    return dataclasses.replace(result, stored_bytes=out + json_size(dict(inputs)))


def charge(run: Run, result: Any, settings: Settings) -> Any:
    """Add a completed step's bytes to its run (locked by the caller), or fail the step
    with ``run_storage_exceeded`` when they would pass the run's limit."""
    if not isinstance(result, Outcome) or not result.stored_bytes:
        return result
    total = (run.stored_bytes or 0) + result.stored_bytes
    if total > settings.max_run_stored_bytes:
        return BlockFailed(
            "run_storage_exceeded",
            f"the run would store {total} bytes; a run may store at most "
            f"{settings.max_run_stored_bytes} (QUORUM_MAX_RUN_STORED_BYTES)",
        )
    run.stored_bytes = total
    return result


def check_fan_out(items: Sequence[Any], body: Sequence[Any], settings: Settings) -> None:
    """Raise ``too_many_items`` before a ``for_each`` creates its iterations."""
    if len(items) > settings.max_for_each_items:
        raise BlockFailed(
            "too_many_items",
            f"{len(items)} items exceed the limit of {settings.max_for_each_items}"
            " (QUORUM_MAX_FOR_EACH_ITEMS)",
        )
    steps = len(items) * max(1, len(body))
    if steps > settings.max_for_each_steps:
        raise BlockFailed(
            "too_many_items",
            f"{len(items)} items x {len(body)} body blocks = {steps} steps exceed the limit"
            f" of {settings.max_for_each_steps} (QUORUM_MAX_FOR_EACH_STEPS)",
        )


def route_errors(
    blocks: Any, *, max_routes: int, loc: tuple[str | int, ...] = ("body",)
) -> list[FieldError]:
    """Routers over the limit, found in a graph as sent (before its expressions are
    compiled: compiling 2,000 of them is already the work the limit prevents)."""
    errors: list[FieldError] = []
    for i, block in enumerate(blocks if isinstance(blocks, list) else []):
        if not isinstance(block, Mapping) or not kind_of(str(block.get("type"))).routes:
            continue
        config = block.get("config")
        routes = config.get("routes") if isinstance(config, Mapping) else None
        if isinstance(routes, list) and len(routes) > max_routes:
            errors.append(
                FieldError(
                    loc=(*loc, "blocks", i, "config", "routes"),
                    msg=f"{len(routes)} routes; at most {max_routes}"
                    " (QUORUM_MAX_ROUTES_PER_ROUTER)",
                )
            )
    return errors


def check_active_runs(s: Session, organization_id: str, settings: Settings) -> None:
    """``429`` when the organization already has its quota of active runs.

    Counted without a lock: requests racing each other may pass the quota by their number,
    never by more.
    """
    limit = settings.max_active_runs_per_org
    if limit <= 0:
        return
    active = s.scalar(
        select(func.count())
        .select_from(Run)
        .where(Run.organization_id == organization_id, Run.status.in_(ACTIVE))
    )
    if (active or 0) >= limit:
        raise TooManyRuns(
            f"the organization has {active} active runs; at most {limit} may be active at"
            " once (QUORUM_MAX_ACTIVE_RUNS_PER_ORG): retry when some have ended",
            retry_after_s=5,
        )
