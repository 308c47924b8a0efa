"""The Celery task names (what Flower shows), in a module that imports nothing of workers/.

The app (``celery_app``), the tasks it registers (``tasks``) and the dispatcher that
publishes them (``dispatch``, through ``runtime``) all need these names; holding them here
keeps those modules from importing each other in a circle.
"""

from __future__ import annotations

TASK_STEP = "quorum.step.execute"
TASK_EXECUTION = "quorum.block_execution.execute"
# One of the n_consensus parallel model calls of a step or a block execution.
TASK_SAMPLE = "quorum.consensus_sample.execute"
# TASK_SAMPLE's name before it was renamed: still run, never sent, so that messages queued
# by an older release are executed rather than dropped as unregistered.
TASK_SAMPLE_FORMER = "quorum.consensus_attempt.execute"
TASK_SWEEP = "quorum.outbox.sweep"
TASK_REAP = "quorum.runs.reap"
TASK_PURGE = "quorum.idempotency.purge"
