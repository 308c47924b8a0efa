"""Engine metrics end to end: a real Celery worker serving its metrics port, the API's
/metrics reading the fleet from PostgreSQL, the outbox sweeper and the reaper counting.

The worker (two prefork processes, so the port merges their samples) runs a workflow
with a consensus block whose second sample fails; each worker family must then carry
samples, and each database-read family real values.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from api.engine_metrics import ENGINE_FAMILIES
from engine.clock import utcnow
from engine.db.models import Run, Step, Workflow
from engine.db.session import Database
from engine.outbox import sweep
from engine.reaper import reap
from engine.run.start import start_run
from tests.support.chat_server import SeedScript, chat_server_process
from tests.support.fleet import Api, Fleet, fleet_env, running_fleet
from workers.celery_app import create_celery
from workers.dispatch import CeleryDispatcher
from workers.metrics import WORKER_FAMILIES

pytestmark = pytest.mark.integration

MODEL = "metrics-model"
# Seed 1 is refused (HTTP 400: not retried), the other two samples answer.
SCRIPT = SeedScript(answers=[{"total": 10}, {"total": 10}, {"total": 10}], statuses={"1": 400})
SCHEMA = {"type": "object", "properties": {"total": {"type": "integer"}}}
START = {"id": "start", "type": "start", "config": {"inputs": {"document": {"type": "json"}}}}
EXTRACT = {
    "id": "extract_total",
    "type": "extract",
    "config": {"n_consensus": 3, "schema": SCHEMA, "model": MODEL},
}
GRAPH = {
    "blocks": [START, EXTRACT, {"id": "end", "type": "end"}],
    "edges": [
        {
            "source": "start",
            "source_handle": "document",
            "target": "extract_total",
            "target_handle": "document",
        },
        {
            "source": "extract_total",
            "source_handle": "output",
            "target": "end",
            "target_handle": "output",
        },
    ],
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def fleet(
    module_database: str,
    module_broker: str,
    tmp_path_factory: pytest.TempPathFactory,
    metrics_port: int,
) -> Iterator[Fleet]:
    data_dir: Path = tmp_path_factory.mktemp("fleet")
    with chat_server_process(SCRIPT) as chat_url:
        env = fleet_env(
            module_database,
            module_broker,
            data_dir,
            QUORUM_PROVIDER="openai",
            QUORUM_PROVIDER_BASE_URL=chat_url,
            QUORUM_PROVIDER_MODEL=MODEL,
            QUORUM_PROVIDER_TIMEOUT_S="10",
        )
        # One worker, so that it does all the work whose metrics are scraped.
        with running_fleet(env, workers=0) as f:
            port = str(metrics_port)
            f.start_worker("metrics", concurrency=2, extra_env={"QUORUM_WORKER_METRICS_PORT": port})
            f.serve()
            # Every scrape of these tests must read the database, not the last read.
            assert f.app is not None
            f.app.extensions["quorum_metrics"].engine.read_every_s = 0
            yield f


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and want <= set(lbl))


def run_consensus(api: Api) -> dict[str, Any]:
    wf = api.create_workflow(GRAPH)
    run = api.wait_run(api.start_run(wf["id"], {"document": "Total: 10"})["id"])
    assert run["status"] == "completed", run
    return run


def test_the_worker_port_carries_every_worker_family(
    api: Api, fleet: Fleet, metrics_port: int
) -> None:
    run_consensus(api)
    samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")

    for family in WORKER_FAMILIES:
        name = family if family.endswith("_total") else f"{family}_count"
        assert total(samples, name) > 0, (family, sorted(n for n, _ in samples))
    # The run's three samples, one refused; merged from both pool processes' files.
    assert total(samples, "quorum_consensus_samples_total", block_type="extract") == 3
    refused = total(
        samples,
        "quorum_consensus_sample_failures_total",
        block_type="extract",
        reason="provider_http_error",
    )
    assert refused == 1
    assert total(samples, "quorum_step_queue_wait_seconds_count", kind="sample") == 3
    assert total(samples, "quorum_step_queue_wait_seconds_count", kind="step") >= 3
    assert (
        total(samples, "quorum_block_run_seconds_count", block_type="extract", outcome="completed")
        == 1
    )
    assert total(samples, "quorum_block_run_seconds_sum", block_type="extract") > 0
    # Serving and the pool's multiprocess files raised nowhere in the worker.
    (worker,) = fleet.workers
    assert not [line for line in worker.lines if "Traceback" in line], worker.lines[-40:]


def unpublished_run(fleet: Fleet, db: Database, workflow_id: str, *, age: timedelta) -> str:
    """A run committed as the API does, whose first message was lost (never published)."""
    with db.transaction() as s:
        workflow = s.get(Workflow, workflow_id)
        assert workflow is not None
        run = start_run(
            s, workflow.organization_id, workflow_id=workflow_id, inputs={"document": "Total: 10"}
        ).run
        old = utcnow() - age
        s.execute(update(Step).where(Step.run_id == run.id).values(created_at=old))
        s.execute(update(Run).where(Run.id == run.id).values(created_at=old, updated_at=old))
        return run.id


def test_the_api_metrics_read_runs_queues_the_outbox_and_the_reaper(api: Api, fleet: Fleet) -> None:
    run_consensus(api)
    wf = api.create_workflow(GRAPH)
    url = f"{fleet.base_url}/metrics"
    db = Database(fleet.settings)
    dispatcher = CeleryDispatcher(create_celery(fleet.settings))
    try:
        lost = unpublished_run(fleet, db, wf["id"], age=timedelta(minutes=10))
        samples = scrape(url)
        assert {n for n, _ in samples} >= set(ENGINE_FAMILIES) - {"quorum_run_terminations_total"}
        assert total(samples, "quorum_runs", status="completed") >= 1
        assert total(samples, "quorum_runs", status="not_started") == 1
        assert total(samples, "quorum_outbox_backlog_rows", kind="step") == 1
        assert total(samples, "quorum_outbox_republished_total") == 0

        # The sweeper publishes the lost step; the worker runs the run to its end.
        assert sweep(db, dispatcher, older_than_s=fleet.settings.outbox_after_s) == 1
        assert api.wait_run(lost)["status"] == "completed"
        samples = scrape(url)
        assert total(samples, "quorum_outbox_republished_total") == 1
        assert total(samples, "quorum_outbox_backlog_rows") == 0
        assert total(samples, "quorum_queued_rows") == 0
        assert total(samples, "quorum_runs", status="not_started") == 0

        # A run that started and then made no progress for two hours is reaped.
        stale = unpublished_run(fleet, db, wf["id"], age=timedelta(hours=2))
        with db.transaction() as s:
            old = utcnow() - timedelta(hours=2)
            s.execute(update(Run).where(Run.id == stale).values(status="started", updated_at=old))
        assert reap(db, dispatcher, default_after_s=3600) == 1
        samples = scrape(url)
        assert total(samples, "quorum_run_terminations_total", reason="stale_run_reaper") == 1
        assert total(samples, "quorum_runs", status="failed") == 1
    finally:
        dispatcher.app.close()
        db.close()


def test_a_queued_row_shows_its_age(api: Api, fleet: Fleet) -> None:
    wf = api.create_workflow(GRAPH)
    db = Database(fleet.settings)
    try:
        run_id = unpublished_run(fleet, db, wf["id"], age=timedelta(minutes=5))
        # Queued (its message counted as sent) five minutes ago, never delivered.
        with db.transaction() as s:
            s.execute(
                update(Step)
                .where(Step.run_id == run_id)
                .values(state="queued", queued_at=utcnow() - timedelta(minutes=5))
            )
        samples = scrape(f"{fleet.base_url}/metrics")
        assert total(samples, "quorum_queued_rows", kind="step") == 1
        assert 299 < total(samples, "quorum_queued_oldest_age_seconds", kind="step") < 400
    finally:
        db.close()
