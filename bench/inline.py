"""The engine in-process: a recording dispatcher, an orchestrator, seed data, bulk rows.

Setup goes through the real API (a Flask test client of ``create_app``) and the real
orchestrator run in this process, so seed runs are what the engine itself produces.
Only bulk copies (5,000 executions, 10,000 steps) are inserted directly, cloned column by
column from rows the engine made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, inspect, select, update
from sqlalchemy.orm import Session

from bench.seam import (
    BlockExecution,
    Database,
    Dispatcher,
    LocalProvider,
    Provider,
    Run,
    Settings,
    Step,
    Toolbox,
    Work,
    Worker,
    WorkKind,
    build_registry,
    create_app,
    issue_key,
    new_id,
    utcnow,
)

CHAIN_LENGTH = 50
EXTRACT_MODEL = "bench-20ms"
EXTRACT_SCHEMA = {"type": "object", "properties": {"total": {"type": "number"}}}
EXTRACT_ANSWER = {"total": 42.0}


class RecordingDispatcher:
    """Keeps what the engine publishes instead of sending it."""

    def __init__(self) -> None:
        self.work: list[Work] = []
        self.revoked: list[Work] = []

    def dispatch(self, work: Sequence[Work]) -> None:
        self.work.extend(work)

    def revoke(self, work: Sequence[Work]) -> None:
        self.revoked.extend(work)


def make_orchestrator(
    settings: Settings,
    db: Database,
    dispatcher: Dispatcher,
    provider: Provider | None = None,
) -> Worker:
    tools = Toolbox(
        functions=build_registry(settings.functions), provider=provider or LocalProvider()
    )
    return Worker(
        db=db,
        dispatcher=dispatcher,
        tools=tools,
        settings=settings,
        worker=f"bench:{os.getpid()}",
        holder_alive=lambda holder: None,
    )


def handle(orch: Worker, work: Work) -> None:
    run: dict[WorkKind, Callable[[str], None]] = {
        WorkKind.STEP: orch.run_step,
        WorkKind.EXECUTION: orch.run_execution,
        WorkKind.SAMPLE: orch.run_sample,
    }
    run[work.kind](work.id)


def drain(orch: Worker, rec: RecordingDispatcher, *, limit: int = 100_000) -> int:
    """Run everything published, in order, until nothing is left."""
    done = 0
    while rec.work:
        handle(orch, rec.work.pop(0))
        done += 1
        if done > limit:
            raise RuntimeError("inline drain did not converge")
    return done


# -- graphs ------------------------------------------------------------------------------


def edge(source: str, sh: str, target: str, th: str) -> dict[str, str]:
    return {"source": source, "source_handle": sh, "target": target, "target_handle": th}


def start_block(*inputs: str) -> dict[str, Any]:
    return {
        "id": "start",
        "type": "start",
        "config": {"inputs": {i: {"type": "json"} for i in inputs}},
    }


def noop_graph() -> dict[str, Any]:
    return {
        "blocks": [
            start_block("x"),
            {"id": "f", "type": "function", "config": {"function": "noop"}},
            {"id": "end", "type": "end"},
        ],
        "edges": [edge("start", "x", "f", "value"), edge("f", "output", "end", "result")],
    }


def chain_graph(n: int) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [start_block("x")]
    edges: list[dict[str, str]] = []
    prev, handle_ = "start", "x"
    for i in range(n):
        blocks.append({"id": f"s{i}", "type": "function", "config": {"function": "noop"}})
        edges.append(edge(prev, handle_, f"s{i}", "value"))
        prev, handle_ = f"s{i}", "output"
    blocks.append({"id": "end", "type": "end"})
    edges.append(edge(prev, handle_, "end", "result"))
    return {"blocks": blocks, "edges": edges}


def extract_graph() -> dict[str, Any]:
    return {
        "blocks": [
            start_block("doc"),
            {
                "id": "ex",
                "type": "extract",
                "config": {
                    "schema": EXTRACT_SCHEMA,
                    "instructions": "Read the total.",
                    "model": EXTRACT_MODEL,
                    "n_consensus": 5,
                },
            },
            {"id": "end", "type": "end"},
        ],
        "edges": [edge("start", "doc", "ex", "document"), edge("ex", "output", "end", "result")],
    }


def foreach_graph(*, ask: bool) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        start_block("items"),
        {"id": "each", "type": "for_each", "config": {"body": ["f"], "collect": "f"}},
        {"id": "f", "type": "function", "config": {"function": "noop"}},
        {"id": "end", "type": "end"},
    ]
    edges = [edge("start", "items", "each", "items"), edge("each", "item", "f", "value")]
    if ask:
        blocks.insert(3, {"id": "ask", "type": "human_input", "config": {}})
        edges += [edge("each", "results", "ask", "prompt"), edge("ask", "response", "end", "r")]
    else:
        edges.append(edge("each", "results", "end", "result"))
    return {"blocks": blocks, "edges": edges}


# -- seed data through the API -------------------------------------------------------------


class ApiClient:
    """The real API in-process (Flask test client), authenticated as one organization."""

    def __init__(self, app: Flask, key: str) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.headers = {"Authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        r = self.client.open(path, method=method, json=body, headers=self.headers)
        if r.status_code != expect:
            raise RuntimeError(f"{method} {path} answered {r.status_code}: {r.get_data(True)}")
        return r.get_json()


@dataclass
class Seed:
    key: str
    org_id: str
    noop_workflow: str
    noop_run: str
    chain_workflow: str
    extract_workflow: str
    extract_run: str
    foreach_workflow: str
    turns_workflow: str


class Engine:
    """The API app and an orchestrator in this process, publishing to a recorder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rec = RecordingDispatcher()
        self.app = create_app(settings, dispatcher=self.rec)
        self.db: Database = self.app.extensions["quorum"].db
        self.orch = make_orchestrator(settings, self.db, self.rec)
        self.key = ""
        self.org_id = ""
        self._api: ApiClient | None = None
        self.seeded: Seed

    @property
    def api(self) -> ApiClient:
        assert self._api is not None, "call seed() first"
        return self._api

    def close(self) -> None:
        self.orch.tools.provider.close()
        self.app.extensions["quorum"].close()

    def seed(self) -> Seed:
        with self.db.transaction() as s:
            issued = issue_key(s, "bench")
        self.key, self.org_id = issued.key, issued.organization_id
        self._api = ApiClient(self.app, self.key)
        noop_wf = self.workflow("noop", noop_graph())
        noop_run = self.run_inline(noop_wf, {"x": 1})
        extract_wf = self.workflow("extract", extract_graph())
        extract_run = self.run_inline(extract_wf, {"doc": "Invoice INV-7, total 42.00 EUR"})
        self.seeded = Seed(
            key=self.key,
            org_id=self.org_id,
            noop_workflow=noop_wf,
            noop_run=noop_run,
            chain_workflow=self.workflow("chain", chain_graph(CHAIN_LENGTH)),
            extract_workflow=extract_wf,
            extract_run=extract_run,
            foreach_workflow=self.workflow("foreach", foreach_graph(ask=False)),
            turns_workflow=self.workflow("turns", foreach_graph(ask=True)),
        )
        return self.seeded

    def workflow(self, name: str, graph: dict[str, Any]) -> str:
        return str(self.api.call("POST", "/v1/workflows", {"name": name, **graph}, 201)["id"])

    def start_run(self, workflow_id: str, inputs: dict[str, Any]) -> str:
        body = {"workflow_id": workflow_id, "inputs": inputs}
        return str(self.api.call("POST", "/v1/workflows/runs", body, 202)["id"])

    def run_inline(self, workflow_id: str, inputs: dict[str, Any]) -> str:
        run_id = self.start_run(workflow_id, inputs)
        drain(self.orch, self.rec)
        status = self.api.call("GET", f"/v1/workflows/runs/{run_id}")["status"]
        if status not in ("completed", "waiting_for_user_input"):
            raise RuntimeError(f"seed run {run_id} ended {status}")
        return run_id

    def create_execution(self, run_id: str, block_id: str) -> str:
        """An execution row as the API creates it; its message stays with the recorder."""
        body = {"run_id": run_id, "block_id": block_id}
        ex = self.api.call("POST", "/v1/workflows/blocks/executions", body, 202)
        self.rec.work.clear()
        return str(ex["id"])

    def turns_run(self, iterations: int) -> str:
        """A completed two-turn run (for_each, human input, answer) with ``iterations``
        for_each iterations in turn 0: 2 run for real, the rest cloned from them."""
        run_id = self.run_inline(self.seeded.turns_workflow, {"items": [0, 1]})
        self.api.call("POST", f"/v1/workflows/runs/{run_id}/input", {"input": {"ok": True}}, 202)
        drain(self.orch, self.rec)
        status = self.api.call("GET", f"/v1/workflows/runs/{run_id}")["status"]
        if status != "completed":
            raise RuntimeError(f"seed run {run_id} ended {status}")
        extra = iterations - 2
        if extra > 0:
            with self.db.transaction() as s:
                template = s.scalars(
                    select(Step).where(Step.run_id == run_id, Step.step_id == "each[1]/f")
                ).one()
                clone_rows(
                    s,
                    Step,
                    template,
                    (
                        {"step_id": f"each[{i}]/f", "scope": f"each[{i}]"}
                        for i in range(2, iterations)
                    ),
                )
                s.execute(
                    update(Run)
                    .where(Run.id == run_id)
                    .values(steps_total=Run.steps_total + extra, steps_done=Run.steps_done + extra)
                )
        return run_id


def column_values(row: Any) -> dict[str, Any]:
    """Every mapped column of an ORM row, by attribute key."""
    return {attr.key: getattr(row, attr.key) for attr in inspect(type(row)).column_attrs}


def clone_rows(
    s: Session, model: Any, template: Any, overrides: Iterable[dict[str, Any]], chunk: int = 5000
) -> list[str]:
    """Insert copies of ``template`` (new ids), one multi-row INSERT per chunk."""
    base = column_values(template)
    ids: list[str] = []
    batch: list[dict[str, Any]] = []
    for extra in overrides:
        row = {**base, **extra, "id": new_id()}
        ids.append(row["id"])
        batch.append(row)
        if len(batch) >= chunk:
            s.execute(insert(model), batch)
            batch = []
    if batch:
        s.execute(insert(model), batch)
    return ids


def queued_executions(
    db: Database, template_id: str, n: int, now: datetime | None = None
) -> list[str]:
    """``n`` copies of an execution row, ``queued`` as the API leaves them after publishing."""
    now = now or utcnow()
    with db.transaction() as s:
        template = s.get(BlockExecution, template_id)
        assert template is not None
        return clone_rows(
            s,
            BlockExecution,
            template,
            ({"state": "queued", "queued_at": now, "created_at": now} for _ in range(n)),
        )
