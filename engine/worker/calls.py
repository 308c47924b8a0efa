"""Recording the model calls a block made (and the run's usage)."""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.orm import Session

from engine.clock import utcnow
from engine.db.models import ModelCall, Run
from engine.ids import new_id
from engine.ports import WorkKind
from engine.providers.base import ModelResponse
from engine.usage import add_usage
from engine.worker.context import Job


def record_calls(s: Session, job: Job, calls: tuple[ModelResponse, ...]) -> None:
    if not calls:
        return
    step = job.kind == WorkKind.STEP
    s.execute(
        insert(ModelCall),
        [
            {
                "id": new_id(),
                "organization_id": job.organization_id,
                "run_id": job.run_id if step else None,
                "turn_index": job.turn if step else None,
                "step_id": job.id if step else None,
                "execution_id": job.id if job.kind == WorkKind.EXECUTION else None,
                "provider": c.provider,
                "model": c.model,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "latency_ms": c.latency_ms,
                "created_at": utcnow(),
            }
            for c in calls
        ],
    )
    if step and job.run_id:
        run = s.get(Run, job.run_id)  # locked by the settling transaction
        if run is not None:
            run.usage = add_usage(run.usage or [], calls)
