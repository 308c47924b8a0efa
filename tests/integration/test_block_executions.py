"""Block executions over HTTP: re-run one block of a past run against the current draft.

Real PostgreSQL, Redis and two Celery worker processes; the workers' model provider is a
chat-completions server subprocess that answers by the request's ``seed`` (the consensus
attempt index), so five attempts disagree the same way every time.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from engine.db.models import BlockExecution, ConsensusSample, ModelCall
from engine.ports import Work, WorkKind
from engine.settings import Settings
from tests.support.chat_server import chat_server_process
from tests.support.fleet import Api, Fleet, by_step_id
from workers.celery_app import create_celery
from workers.dispatch import CeleryDispatcher

pytestmark = pytest.mark.integration

EXECUTIONS = "/v1/workflows/blocks/executions"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
FIELDS = {
    "id",
    "workflow_id",
    "source_run_id",
    "source_step_id",
    "block_id",
    "block_type",
    "lifecycle",
    "workflow_version_id",
    "handle_inputs",
    "handle_outputs",
    "artifact",
    "routing_decisions",
    "duration_ms",
    "created_at",
    "started_at",
    "completed_at",
    "block_config",
    "available_iterations",
    "n_consensus",
    "consensus",
}
# Answer i goes to the request with seed i: "total" always agrees, "currency" 4 of 5 times,
# "vendor" 3 of 5 times. Attempt 0 (the only one without consensus) gets the majority.
ANSWERS = [
    {"total": 10, "currency": "EUR", "vendor": "ACME"},
    {"total": 10, "currency": "EUR", "vendor": "ACME"},
    {"total": 10, "currency": "USD", "vendor": "ACME"},
    {"total": 10, "currency": "EUR", "vendor": "Globex"},
    {"total": 10, "currency": "EUR", "vendor": "Initech"},
]
INVOICE_SCHEMA = {
    "type": "object",
    "properties": {
        "total": {"type": "number"},
        "currency": {"type": "string"},
        "vendor": {"type": "string"},
    },
    "required": ["total", "currency", "vendor"],
}


@pytest.fixture(scope="module")
def chat_url() -> Iterator[str]:
    # A little latency keeps consensus attempts in flight long enough to cancel under them.
    with chat_server_process(ANSWERS, delay_ms=300) as url:
        yield url


@pytest.fixture(scope="module")
def fleet_extra_env(chat_url: str) -> dict[str, str]:
    return {
        "QUORUM_PROVIDER": "openai",
        "QUORUM_PROVIDER_BASE_URL": chat_url,
        "QUORUM_PROVIDER_MODEL": "test-model",
    }


@pytest.fixture(scope="module")
def db(fleet: Fleet) -> Iterator[Engine]:
    engine = create_engine(fleet.env["QUORUM_DATABASE_URL"], poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def other_org(fleet: Fleet) -> Iterator[Api]:
    client = Api(fleet.base_url, fleet.new_key(f"other-org-{uuid.uuid4().hex[:6]}"))
    yield client
    client.close()


@pytest.fixture
def dispatcher(fleet: Fleet) -> Iterator[CeleryDispatcher]:
    d = CeleryDispatcher(create_celery(Settings.from_env(fleet.env)))
    yield d
    d.close()


# -- graph helpers ------------------------------------------------------------------------


def start(**inputs: str) -> dict[str, Any]:
    return {
        "id": "start",
        "type": "start",
        "config": {"inputs": {k: {"type": v} for k, v in inputs.items()}},
    }


def fn(block_id: str, function: str, **params: Any) -> dict[str, Any]:
    return {"id": block_id, "type": "function", "config": {"function": function, "params": params}}


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


END = {"id": "end", "type": "end"}


def json_value(data: Any) -> dict[str, Any]:
    return {"type": "json", "data": data}


# -- API helpers ----------------------------------------------------------------------------


def completed_run(
    api: Api, graph: dict[str, Any], inputs: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    wf = api.create_workflow(graph)
    run = api.wait_run(api.start_run(wf["id"], inputs, **extra)["id"])
    assert run["status"] == "completed", run
    return run


def patch_block(api: Api, workflow_id: str, block_id: str, config: dict[str, Any]) -> None:
    r = api.http.patch(
        f"/v1/workflows/{workflow_id}/draft/blocks/{block_id}", json={"config": config}
    )
    assert r.status_code == 200, r.text


def replace_draft(api: Api, workflow_id: str, graph: dict[str, Any]) -> None:
    r = api.http.put(f"/v1/workflows/{workflow_id}/draft", json=graph)
    assert r.status_code == 200, r.text


def draft_config(api: Api, workflow_id: str, block_id: str) -> dict[str, Any]:
    draft = api.get(f"/v1/workflows/{workflow_id}").json()["draft"]
    return dict(next(b for b in draft["blocks"] if b["id"] == block_id)["config"])


def execute(api: Api, run_id: str, block_id: str, **extra: Any) -> dict[str, Any]:
    r = api.post(EXECUTIONS, {"run_id": run_id, "block_id": block_id, **extra})
    assert r.status_code == 202, r.text
    body = dict(r.json())
    assert set(body) == FIELDS
    assert body["lifecycle"]["status"] in ("pending", "queued"), body["lifecycle"]
    return body


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = dict(r.json())
    assert body["status"] == status
    return body


def wait_for(what: str, done: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def task_lines(fleet: Fleet, execution_id: str, word: str) -> list[str]:
    """Worker log lines about this execution's task that contain ``word``."""
    needle = f"[execution-{execution_id}]"
    return [
        line for w in fleet.workers for line in list(w.lines) if needle in line and word in line
    ]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def effect_lines(fleet: Fleet, tag: str) -> list[str]:
    path = Path(fleet.env["QUORUM_TEST_EFFECTS_DIR"]) / f"{tag}.log"
    return path.read_text().splitlines() if path.exists() else []


def execution_rows(db: Engine, run_id: str) -> int:
    with Session(db) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(BlockExecution)
                .where(BlockExecution.run_id == run_id)
            )
            or 0
        )


# -- tests ------------------------------------------------------------------------------------


def test_rerun_after_editing_the_draft_leaves_the_run_alone(api: Api) -> None:
    graph = {
        "blocks": [start(x="json"), fn("calc", "double"), END],
        "edges": [edge("start", "x", "calc", "value"), edge("calc", "output", "end", "out")],
    }
    run = completed_run(api, graph, {"x": 5})
    wf_id, run_id = run["workflow_id"], run["id"]
    steps_before = api.steps(run_id)
    run_before = api.get(f"/v1/workflows/runs/{run_id}").json()

    # Switch the function: the block's own config may differ from the run's, that is the point.
    patch_block(api, wf_id, "calc", {"function": "inc"})
    created = execute(api, run_id, "calc")
    assert created["block_config"] == draft_config(api, wf_id, "calc")
    ex = api.wait_execution(created["id"])
    assert set(ex) == FIELDS
    assert ex["lifecycle"] == {"status": "completed"}
    assert ex["id"] == created["id"] and re.fullmatch(r"[0-9a-f]{24}", ex["id"])
    assert (ex["workflow_id"], ex["source_run_id"]) == (wf_id, run_id)
    assert (ex["block_id"], ex["block_type"]) == ("calc", "function")
    assert ex["workflow_version_id"] == str(run["version"]) == "0"
    assert ex["source_step_id"] == "calc"
    assert ex["available_iterations"] is None
    calc_inputs = by_step_id(steps_before)["calc"]["inputs"]
    assert ex["handle_inputs"] == calc_inputs == {"value": json_value(5)}
    assert ex["handle_outputs"] == {"output": json_value(6)}  # inc, not the run's double (10)
    assert ex["routing_decisions"] == ["output"]
    assert ex["block_config"] == {"function": "inc"}
    assert (ex["n_consensus"], ex["consensus"]) == (1, None)
    assert ex["artifact"] == {"operation": "function_invocation", "id": ex["id"]}
    assert isinstance(ex["duration_ms"], int) and ex["duration_ms"] >= 0
    for key in ("created_at", "started_at", "completed_at"):
        assert RFC3339.match(ex[key]), (key, ex[key])

    # Change the params: the new config is frozen into the new execution, errors are tagged.
    patch_block(api, wf_id, "calc", {"function": "explode", "params": {"message": "v3 broke"}})
    failed = api.wait_execution(execute(api, run_id, "calc")["id"])
    assert failed["lifecycle"] == {
        "status": "error",
        "message": "v3 broke",
        "error": {"type": "ValueError", "message": "v3 broke"},
    }
    assert failed["handle_outputs"] is None and failed["artifact"] is None
    assert failed["block_config"] == {"function": "explode", "params": {"message": "v3 broke"}}
    # The first execution keeps the config it ran with.
    assert api.get(f"{EXECUTIONS}/{ex['id']}").json() == ex

    listed = api.get(EXECUTIONS, params={"run_id": run_id, "block_id": "calc"}).json()
    assert [e["id"] for e in listed["data"]] == [failed["id"], ex["id"]]  # newest first
    assert listed["has_more"] is False and listed["next_after"] is None
    assert listed["list_metadata"] == {"before": None, "after": None}
    oldest_first = api.get(EXECUTIONS, params={"run_id": run_id, "order": "asc", "limit": 1})
    assert [e["id"] for e in oldest_first.json()["data"]] == [ex["id"]]
    assert oldest_first.json()["list_metadata"] == {"before": None, "after": ex["id"]}

    # The source run and its steps are untouched.
    assert api.get(f"/v1/workflows/runs/{run_id}").json() == run_before
    assert api.steps(run_id) == steps_before


def test_for_each_iteration_chosen_by_step_id(api: Api) -> None:
    graph = {
        "blocks": [
            start(items="json"),
            {"id": "pages", "type": "for_each", "config": {"body": ["double"]}},
            fn("double", "double"),
            END,
        ],
        "edges": [
            edge("start", "items", "pages", "items"),
            edge("pages", "item", "double", "value"),
            edge("pages", "results", "end", "results"),
        ],
    }
    run = completed_run(api, graph, {"items": list(range(1, 13))})
    steps = by_step_id(api.steps(run["id"]))
    # In iteration order (pages[10] after pages[9]), whatever order the rows were written in.
    step_ids = [f"pages[{i}]/double" for i in range(12)]
    assert sorted(s for s in steps if s.endswith("/double")) == sorted(step_ids)
    iterations = [{"step_id": f"pages[{i}]/double", "iteration": f"pages[{i}]"} for i in range(12)]

    # Several steps and no step_id: the answer lists them.
    body = problem(api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "double"}), 422)
    assert body["available_iterations"] == iterations
    assert body["errors"][0]["loc"] == ["body", "step_id"]
    # A step_id that is not a step of this block in this run.
    for wrong in ("pages[12]/double", "pages[0]/nope", "double"):
        r = api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "double", "step_id": wrong})
        body = problem(r, 422)
        assert body["available_iterations"] == iterations
        assert body["errors"][0]["loc"] == ["body", "step_id"]
    assert api.get(EXECUTIONS, params={"run_id": run["id"]}).json()["data"] == []

    ex = api.wait_execution(execute(api, run["id"], "double", step_id="pages[2]/double")["id"])
    assert ex["lifecycle"] == {"status": "completed"}
    assert ex["source_step_id"] == "pages[2]/double"
    assert ex["handle_inputs"] == steps["pages[2]/double"]["inputs"] == {"value": json_value(3)}
    assert ex["handle_outputs"] == {"output": json_value(6)}
    assert ex["available_iterations"] == iterations

    # A for_each itself runs only inside a run.
    problem(api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "pages"}), 422)


def test_consensus_of_five_disagreeing_attempts(api: Api, db: Engine) -> None:
    graph = {
        "blocks": [
            start(doc="json"),
            {"id": "invoice", "type": "extract", "config": {"schema": INVOICE_SCHEMA}},
            END,
        ],
        "edges": [
            edge("start", "doc", "invoice", "document"),
            edge("invoice", "output", "end", "data"),
        ],
    }
    run = completed_run(api, graph, {"doc": "Invoice 42 from ACME: 10 EUR"})
    assert run["io_pairs"][0]["output"] == {"data": ANSWERS[0]}
    run_before = api.get(f"/v1/workflows/runs/{run['id']}").json()

    created = execute(api, run["id"], "invoice", n_consensus=5)
    assert created["n_consensus"] == 5
    ex = api.wait_execution(created["id"])
    assert ex["lifecycle"] == {"status": "completed"}, ex["lifecycle"]
    assert ex["n_consensus"] == 5
    assert ex["block_config"] == {"schema": INVOICE_SCHEMA, "n_consensus": 5}
    majority = {"total": 10, "currency": "EUR", "vendor": "ACME"}
    assert ex["handle_outputs"] == {"output": json_value(majority)}
    assert ex["consensus"] == {
        "value": majority,
        "likelihoods": {"total": 1.0, "currency": 0.8, "vendor": 0.6},
        "attempts": 5,
        "succeeded": 5,
        "answers": [{"answer": a} for a in ANSWERS],
    }
    assert ex["artifact"] == {"operation": "extraction", "id": ex["id"]}

    # The raw attempts are kept, one per seed, each with the answer it got.
    with Session(db) as s:
        attempts = list(
            s.scalars(
                select(ConsensusSample)
                .where(
                    ConsensusSample.owner_kind == "execution",
                    ConsensusSample.owner_id == ex["id"],
                )
                .order_by(ConsensusSample.index)
            )
        )
        calls = list(s.scalars(select(ModelCall).where(ModelCall.execution_id == ex["id"])))
    assert [a.index for a in attempts] == [0, 1, 2, 3, 4]
    assert [a.state for a in attempts] == ["completed"] * 5
    assert [a.output for a in attempts] == ANSWERS
    assert {a.owner_attempt for a in attempts} == {1}
    assert len(calls) == 5
    assert {(c.provider, c.model, c.run_id) for c in calls} == {("openai", "test-model", None)}

    # The run (its token usage included) does not count the execution's model calls.
    assert api.get(f"/v1/workflows/runs/{run['id']}").json() == run_before


def test_bad_n_consensus_is_refused_and_writes_nothing(api: Api, db: Engine) -> None:
    graph = {
        "blocks": [
            start(doc="json"),
            {"id": "invoice", "type": "extract", "config": {"schema": INVOICE_SCHEMA}},
            fn("calc", "double"),
            END,
        ],
        "edges": [
            edge("start", "doc", "invoice", "document"),
            edge("start", "doc", "calc", "value"),
            edge("invoice", "output", "end", "data"),
            edge("calc", "output", "end", "twice"),
        ],
    }
    run = completed_run(api, graph, {"doc": 21})
    for block_id, n in (("invoice", 4), ("invoice", 1), ("invoice", True), ("calc", 3)):
        r = api.post(EXECUTIONS, {"run_id": run["id"], "block_id": block_id, "n_consensus": n})
        body = problem(r, 422)
        assert "n_consensus" in body["detail"]
        assert body["errors"][0]["loc"] == ["body", "n_consensus"], body
    assert execution_rows(db, run["id"]) == 0
    assert api.get(EXECUTIONS, params={"run_id": run["id"]}).json()["data"] == []


def test_upstream_drift_is_refused_unless_eligibility_is_not_checked(api: Api, db: Engine) -> None:
    graph = {
        "blocks": [start(x="json"), fn("a", "double"), fn("b", "inc"), END],
        "edges": [
            edge("start", "x", "a", "value"),
            edge("a", "output", "b", "value"),
            edge("b", "output", "end", "out"),
        ],
    }
    run = completed_run(api, graph, {"x": 5})
    assert run["io_pairs"][0]["output"] == {"out": 11}
    drifted = {
        "blocks": [start(x="json"), fn("a", "add"), fn("b", "inc"), END],
        "edges": [*graph["edges"], edge("start", "x", "b", "extra")],
    }
    replace_draft(api, run["workflow_id"], drifted)

    body = problem(api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "b"}), 409)
    assert body["drift"] == {"blocks": ["a"], "edges": ["start.x->b.extra"]}
    assert execution_rows(db, run["id"]) == 0

    # Downstream of b nothing drifted: end may run, and b's own config may change freely.
    patch_block(api, run["workflow_id"], "b", {"function": "double"})
    body = problem(api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "b"}), 409)
    assert body["drift"] == {"blocks": ["a"], "edges": ["start.x->b.extra"]}

    # verify_upstream is the alias of check_eligibility; both at once are refused.
    both = {"run_id": run["id"], "block_id": "b", "check_eligibility": False}
    body = problem(api.post(EXECUTIONS, {**both, "verify_upstream": False}), 422)
    assert "not both" in body["errors"][0]["msg"]
    assert execution_rows(db, run["id"]) == 0
    for name in ("check_eligibility", "verify_upstream"):
        ex = api.wait_execution(execute(api, run["id"], "b", **{name: False})["id"])
        assert ex["lifecycle"] == {"status": "completed"}
        # The run's step, not the draft's wiring.
        assert ex["handle_inputs"] == {"value": json_value(10)}
        assert ex["handle_outputs"] == {"output": json_value(20)}


def test_block_new_in_the_draft_takes_the_runs_upstream_outputs(api: Api, db: Engine) -> None:
    graph = {
        "blocks": [
            start(x="json"),
            {
                "id": "route",
                "type": "router",
                "config": {"routes": [{"handle": "big", "when": "input > 10"}], "default": "small"},
            },
            fn("big_path", "double"),
            fn("small_path", "inc"),
            END,
        ],
        "edges": [
            edge("start", "x", "route", "input"),
            edge("route", "big", "big_path", "value"),
            edge("route", "small", "small_path", "value"),
            edge("big_path", "output", "end", "big"),
            edge("small_path", "output", "end", "small"),
        ],
    }
    run = completed_run(api, graph, {"x": 3}, version="draft")
    assert run["io_pairs"][0]["output"] == {"small": 4}
    assert run["version"] == "draft"
    draft = {
        "blocks": [*graph["blocks"], fn("total", "add"), fn("lost", "inc")],
        "edges": [
            *graph["edges"],
            edge("start", "x", "total", "a"),
            edge("small_path", "output", "total", "b"),
            edge("big_path", "output", "lost", "value"),  # big_path was skipped in the run
        ],
    }
    replace_draft(api, run["workflow_id"], draft)

    created = execute(api, run["id"], "total")
    assert created["source_step_id"] is None and created["available_iterations"] is None
    ex = api.wait_execution(created["id"])
    assert ex["lifecycle"] == {"status": "completed"}
    assert ex["handle_inputs"] == {"a": json_value(3), "b": json_value(4)}
    assert ex["handle_outputs"] == {"output": json_value(7)}
    assert ex["workflow_version_id"] == "draft"  # of the source run, which ran the draft

    body = problem(api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "lost"}), 422)
    assert any("big_path.output" in e["msg"] for e in body["errors"]), body
    # A block in neither the run nor the draft.
    problem(api.post(EXECUTIONS, {"run_id": run["id"], "block_id": "ghost"}), 404)
    assert execution_rows(db, run["id"]) == 1


def test_cancel_queued_running_and_terminal(api: Api, fleet: Fleet, tmp_path: Path) -> None:
    graph = {
        "blocks": [start(x="json"), fn("work", "inc"), END],
        "edges": [edge("start", "x", "work", "value"), edge("work", "output", "end", "out")],
    }
    run = completed_run(api, graph, {"x": 1})
    wf_id, run_id = run["workflow_id"], run["id"]
    markers = [tmp_path / "a.pid", tmp_path / "b.pid"]
    slow: list[dict[str, Any]] = []
    for marker, seconds in zip(markers, (4, 2), strict=True):
        patch_block(
            api,
            wf_id,
            "work",
            {"function": "slow", "params": {"seconds": seconds, "marker": str(marker)}},
        )
        slow.append(execute(api, run_id, "work"))
        wait_for(f"{marker.name} to start", marker.exists)
    held, other = slow  # both workers are busy now

    # Queued behind them: cancelled before any worker could claim it, it never runs.
    tag = f"never-{tmp_path.name}"
    patch_block(api, wf_id, "work", {"function": "effect", "params": {"tag": tag}})
    queued = execute(api, run_id, "work")
    waiting = api.get(f"{EXECUTIONS}/{queued['id']}").json()["lifecycle"]
    assert set(waiting) == {"status", "queued_at"} and waiting["status"] == "queued"
    assert RFC3339.match(waiting["queued_at"])
    r = api.post(f"{EXECUTIONS}/{queued['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["lifecycle"] == {"status": "cancelled", "reason": "cancelled_by_user"}

    # Running: the worker's late completion must not revive it.
    running = api.get(f"{EXECUTIONS}/{held['id']}").json()["lifecycle"]
    assert set(running) == {"status", "started_at", "worker", "attempt"}
    assert running["status"] == "running" and running["attempt"] == 1
    assert RFC3339.match(running["started_at"]) and running["worker"]
    r = api.post(f"{EXECUTIONS}/{held['id']}/cancel")
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["lifecycle"] == {"status": "cancelled", "reason": "cancelled_by_user"}
    assert cancelled["handle_outputs"] is None and cancelled["completed_at"] is not None

    done = api.wait_execution(other["id"])
    assert done["lifecycle"] == {"status": "completed"}
    assert done["handle_outputs"] == {"output": json_value(1)}
    # Terminal, whichever way it ended: 409.
    for ex in (done, cancelled, queued):
        problem(api.post(f"{EXECUTIONS}/{ex['id']}/cancel"), 409)

    # The cancelled-while-queued message reaches a worker, which drops it.
    wait_for("the queued message", lambda: task_lines(fleet, queued["id"], "succeeded"))
    # The held task ends one way or the other: killed by the revoke, or its slow function
    # returns and the fenced completion is refused.
    pid = int(markers[0].read_text())
    wait_for(
        "the cancelled task to end",
        lambda: not process_alive(pid) or task_lines(fleet, held["id"], "succeeded"),
    )
    for ex in (held, queued):
        final = api.get(f"{EXECUTIONS}/{ex['id']}").json()
        assert final["lifecycle"] == {"status": "cancelled", "reason": "cancelled_by_user"}
        assert final["handle_outputs"] is None
    assert effect_lines(fleet, tag) == []


def test_cancel_under_consensus_discards_the_late_attempts(api: Api, db: Engine) -> None:
    graph = {
        "blocks": [
            start(doc="json"),
            {"id": "invoice", "type": "extract", "config": {"schema": INVOICE_SCHEMA}},
            END,
        ],
        "edges": [
            edge("start", "doc", "invoice", "document"),
            edge("invoice", "output", "end", "data"),
        ],
    }
    run = completed_run(api, graph, {"doc": "Invoice 43"})
    ex = execute(api, run["id"], "invoice", n_consensus=7)

    def attempts() -> list[ConsensusSample]:
        with Session(db) as s:
            return list(
                s.scalars(
                    select(ConsensusSample)
                    .where(ConsensusSample.owner_id == ex["id"])
                    .order_by(ConsensusSample.index)
                )
            )

    wait_for("an attempt in flight", lambda: any(a.state == "running" for a in attempts()))
    r = api.post(f"{EXECUTIONS}/{ex['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["lifecycle"] == {"status": "cancelled", "reason": "cancelled_by_user"}

    final = wait_for(
        "every attempt to end",
        lambda: (
            (rows := attempts())
            and all(a.state in ("completed", "cancelled") for a in rows)
            and rows
        ),
    )
    assert len(final) == 7
    # The attempts in flight finished (their answers are kept), the rest never called the model.
    assert "completed" in {a.state for a in final}
    assert {a.reason for a in final if a.state == "cancelled"} <= {"owner_ended"}
    after = api.get(f"{EXECUTIONS}/{ex['id']}").json()
    assert after["lifecycle"] == {"status": "cancelled", "reason": "cancelled_by_user"}
    assert (after["handle_outputs"], after["consensus"]) == (None, None)


def test_other_organizations_see_nothing(api: Api, other_org: Api) -> None:
    graph = {
        "blocks": [start(x="json"), fn("calc", "double"), END],
        "edges": [edge("start", "x", "calc", "value"), edge("calc", "output", "end", "out")],
    }
    run = completed_run(api, graph, {"x": 2})
    ex = api.wait_execution(execute(api, run["id"], "calc")["id"])

    problem(other_org.post(EXECUTIONS, {"run_id": run["id"], "block_id": "calc"}), 404)
    problem(other_org.get(f"{EXECUTIONS}/{ex['id']}"), 404)
    problem(other_org.post(f"{EXECUTIONS}/{ex['id']}/cancel"), 404)
    assert other_org.get(EXECUTIONS, params={"run_id": run["id"]}).json()["data"] == []
    assert other_org.get(EXECUTIONS).json()["data"] == []
    # Unknown ids answer the same way.
    problem(api.get(f"{EXECUTIONS}/{'0' * 24}"), 404)
    problem(api.post(EXECUTIONS, {"run_id": "0" * 24, "block_id": "calc"}), 404)
    assert api.get(f"{EXECUTIONS}/{ex['id']}").json() == ex


def test_duplicate_delivery_executes_once(
    api: Api, fleet: Fleet, db: Engine, dispatcher: CeleryDispatcher, tmp_path: Path
) -> None:
    graph = {
        "blocks": [start(x="json"), fn("work", "inc"), END],
        "edges": [edge("start", "x", "work", "value"), edge("work", "output", "end", "out")],
    }
    run = completed_run(api, graph, {"x": 7})
    tag = f"dup-{tmp_path.name}"
    patch_block(
        api,
        run["workflow_id"],
        "work",
        {"function": "effect", "params": {"tag": tag, "sleep": 1.5}},
    )
    ex = execute(api, run["id"], "work")
    work = [Work(kind=WorkKind.EXECUTION, id=ex["id"])]

    wait_for("the execution to run", lambda: effect_lines(fleet, tag))
    assert api.get(f"{EXECUTIONS}/{ex['id']}").json()["lifecycle"]["status"] == "running"
    dispatcher.dispatch(work)  # while it runs: the other worker must drop it
    wait_for(
        "the duplicate to be dropped",
        lambda: [
            line
            for w in fleet.workers
            for line in list(w.lines)
            if "duplicate delivery dropped" in line and ex["id"] in line
        ],
    )
    done = api.wait_execution(ex["id"])
    assert done["lifecycle"] == {"status": "completed"}
    dispatcher.dispatch(work)  # after it completed
    wait_for(
        "all three deliveries",
        lambda: len(task_lines(fleet, ex["id"], "succeeded")) >= 3,
    )

    assert effect_lines(fleet, tag) == [f"7 {effect_lines(fleet, tag)[0].split()[1]}"]
    assert api.get(f"{EXECUTIONS}/{ex['id']}").json() == done
    assert done["handle_outputs"] == {"output": json_value(7)}
    with Session(db) as s:
        row = s.get(BlockExecution, ex["id"])
        assert row is not None
        assert (row.state, row.attempt) == ("completed", 1)
