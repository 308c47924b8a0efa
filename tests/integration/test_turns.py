"""Turns, human input, checkpoint runs, evaluation runs and the safety nets that end runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, update

from engine.db.models import ModelCall, Run
from engine.db.session import Database
from engine.reaper import reap
from engine.settings import Settings
from tests.support.fleet import Api, Fleet, by_step_id

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet_extra_env() -> dict[str, str]:
    return {"QUORUM_FAULT_POINTS": "orchestrator.after_claim:faulty"}


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


CHAT = {
    "blocks": [
        {"id": "start", "type": "start", "config": {"inputs": {"doc": {"type": "json"}}}},
        {
            "id": "facts",
            "type": "extract",
            "config": {"schema": {"type": "object", "properties": {"name": {"type": "string"}}}},
        },
        {
            "id": "ask",
            "type": "human_input",
            "config": {
                "schema": {
                    "type": "object",
                    "properties": {"ok": {"type": "boolean"}},
                    "required": ["ok"],
                }
            },
        },
        {"id": "decide", "type": "function", "config": {"function": "identity"}},
        {"id": "end", "type": "end"},
    ],
    "edges": [
        edge("start", "doc", "facts", "document"),
        edge("facts", "output", "ask", "prompt"),
        edge("ask", "response", "decide", "value"),
        edge("decide", "output", "end", "decision"),
    ],
}


def _calls(fleet: Fleet, run_id: str) -> int:
    engine = create_engine(fleet.env["QUORUM_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count()).select_from(ModelCall).where(ModelCall.run_id == run_id)
                )
                or 0
            )
    finally:
        engine.dispose()


def _two_turns(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    wf = api.create_workflow(CHAT)
    run = api.start_run(wf["id"], {"doc": "name: Ada"})
    waiting = api.wait_run(
        run["id"],
        until=lambda r: r["status"] != "running" and r["status"] not in ("not_started", "started"),
    )
    assert waiting["status"] == "waiting_for_user_input", waiting["error"]
    return wf, waiting


def test_two_turn_conversation(api: Api, fleet: Fleet) -> None:
    _, waiting = _two_turns(api)
    assert waiting["io_pairs"][0]["output"]["awaiting_input"]["prompt"] == {"name": "Ada"}
    bad = api.post(f"/v1/workflows/runs/{waiting['id']}/input", {"input": {"ok": "yes"}})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"][:3] == ["body", "input", "ok"]
    r = api.post(f"/v1/workflows/runs/{waiting['id']}/input", {"input": {"ok": True}})
    assert r.status_code == 202, r.text
    done = api.wait_run(waiting["id"])
    assert done["status"] == "completed"
    assert [p["turn_index"] for p in done["io_pairs"]] == [0, 1]
    assert done["io_pairs"][1]["input"] == {"ok": True}
    assert done["io_pairs"][1]["output"] == {"decision": {"ok": True}}
    ids = [s["step_id"] for s in api.steps(done["id"])]
    assert len(ids) == len(set(ids))
    assert {"t1/ask", "t1/decide", "t1/end", "ask", "facts"} <= set(ids)
    again = api.post(f"/v1/workflows/runs/{done['id']}/input", {"input": {"ok": False}})
    assert again.status_code == 409


def test_checkpoint_from_turn_one_with_new_input(api: Api, fleet: Fleet) -> None:
    _, waiting = _two_turns(api)
    api.post(f"/v1/workflows/runs/{waiting['id']}/input", {"input": {"ok": True}})
    parent = api.wait_run(waiting["id"])
    parent_calls = _calls(fleet, parent["id"])
    assert parent_calls == 1
    r = api.post(
        f"/v1/workflows/runs/{parent['id']}/checkpoint",
        {"resume_turn_index": 1, "input": {"ok": False}},
    )
    assert r.status_code == 202, r.text
    child = api.wait_run(r.json()["id"])
    assert child["status"] == "completed"
    assert child["original_run_id"] == parent["id"]
    assert child["parent_turn_index"] == 1
    assert child["config"] == parent["config"]
    assert child["io_pairs"][0]["output"] == parent["io_pairs"][0]["output"]
    assert child["io_pairs"][1]["output"] == {"decision": {"ok": False}}
    steps = by_step_id(api.steps(child["id"]))
    parent_steps = by_step_id(api.steps(parent["id"]))
    # Turn 0 was taken over, not executed again: same outputs and times, no model call.
    assert steps["facts"]["outputs"] == parent_steps["facts"]["outputs"]
    assert steps["facts"]["completed_at"] == parent_steps["facts"]["completed_at"]
    assert _calls(fleet, child["id"]) == 0
    assert child["token_usage"]["total"] == 0
    lineage = api.get("/v1/workflows/runs", params={"original_run_id": parent["id"]}).json()
    assert [x["id"] for x in lineage["data"]] == [child["id"]]


def test_202_answers_show_the_run_as_stored(api: Api) -> None:
    wf = api.create_workflow(CHAT)
    started = api.start_run(wf["id"], {"doc": "name: Ada"})
    assert started["status"] == "not_started"
    assert [(p["turn_index"], p["input"], p["output"]) for p in started["io_pairs"]] == [
        (0, {"doc": "name: Ada"}, None)
    ]
    waiting = api.wait_run(started["id"], until=lambda r: r["status"] == "waiting_for_user_input")
    r = api.post(f"/v1/workflows/runs/{waiting['id']}/input", {"input": {"ok": True}})
    parent = api.wait_run(waiting["id"])
    assert parent["status"] == "completed", parent

    # A checkpoint run is not_started whatever the turn it resumes at, with its turns as
    # stored: the ones taken over and the resumed one with its input.
    url = f"/v1/workflows/runs/{parent['id']}/checkpoint"
    forks = [api.post(url, {"resume_turn_index": k, "input": i}) for k, i in SAME_STATUS_FORKS]
    for (k, new_input), fork in zip(SAME_STATUS_FORKS, forks, strict=True):
        assert fork.status_code == 202, fork.text
        child = fork.json()
        assert child["status"] == "not_started", (k, child["status"])
        assert child["completed_at"] is None and child["termination_reason"] is None
        assert [p["turn_index"] for p in child["io_pairs"]] == list(range(k + 1))
        assert child["io_pairs"][:k] == parent["io_pairs"][:k]
        assert (child["io_pairs"][k]["input"], child["io_pairs"][k]["output"]) == (new_input, None)
        # Then it runs: turn 0 again up to the question, or turn 1 to the end.
        end = ENDS_AT[k]
        ended = api.wait_run(child["id"], until=lambda run, end=end: run["status"] == end)
        assert ended["io_pairs"][k]["input"] == new_input
    assert r.status_code == 202


SAME_STATUS_FORKS = [(0, {"doc": "name: Bob"}), (1, {"ok": False})]
ENDS_AT = {0: "waiting_for_user_input", 1: "completed"}


def test_a_checkpoint_whose_answer_reaches_no_block_completes_at_once(api: Api) -> None:
    graph = {
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"doc": {"type": "json"}}}},
            {"id": "ask", "type": "human_input", "config": {}},
        ],
        "edges": [edge("start", "doc", "ask", "prompt")],
    }
    run = api.start_run(api.create_workflow(graph)["id"], {"doc": 1})
    api.wait_run(run["id"], until=lambda r: r["status"] == "waiting_for_user_input")
    api.post(f"/v1/workflows/runs/{run['id']}/input", {"input": "yes"})
    assert api.wait_run(run["id"])["status"] == "completed"
    r = api.post(f"/v1/workflows/runs/{run['id']}/checkpoint", {"resume_turn_index": 1})
    assert r.status_code == 202, r.text
    # Nothing to run: the run as stored is already complete, and stays so.
    child = r.json()
    assert child["status"] == "completed" and child["completed_at"] is not None
    assert child["io_pairs"][1]["input"] == "yes"
    assert api.get(f"/v1/workflows/runs/{child['id']}").json()["status"] == "completed"


def test_checkpoint_with_a_bad_index_is_422(api: Api) -> None:
    _, waiting = _two_turns(api)
    for index in (2, 7):
        r = api.post(f"/v1/workflows/runs/{waiting['id']}/checkpoint", {"resume_turn_index": index})
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["body", "resume_turn_index"]
    r = api.post(f"/v1/workflows/runs/{waiting['id']}/checkpoint", {"resume_turn_index": -1})
    assert r.status_code == 422


def test_evaluation_run_fills_evaluation(api: Api) -> None:
    evaluator = api.create_workflow(
        {
            "blocks": [
                {
                    "id": "start",
                    "type": "start",
                    "config": {"inputs": {"inputs": {"type": "json"}, "outputs": {"type": "json"}}},
                },
                {"id": "score", "type": "function", "config": {"function": "identity"}},
                {"id": "end", "type": "end"},
            ],
            "edges": [
                edge("start", "outputs", "score", "value"),
                edge("score", "output", "end", "score"),
            ],
        },
        name="evaluator",
    )
    wf = api.post(
        "/v1/workflows",
        {
            "name": "evaluated",
            "settings": {"evaluation_workflow_id": evaluator["id"]},
            "blocks": [
                {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
                {"id": "d", "type": "function", "config": {"function": "double"}},
                {"id": "end", "type": "end"},
            ],
            "edges": [edge("start", "x", "d", "value"), edge("d", "output", "end", "y")],
        },
    ).json()
    run = api.wait_run(api.start_run(wf["id"], {"x": 21})["id"])
    assert run["status"] == "completed"
    run = api.wait_run(
        run["id"], until=lambda r: (r["evaluation"] or {}).get("status") == "completed"
    )
    evaluation = run["evaluation"]
    assert evaluation["outputs"] == {"score": {"y": 42}}
    ev = api.get(f"/v1/workflows/runs/{evaluation['run_id']}").json()
    assert ev["is_evaluation"] is True
    assert ev["original_run_id"] == run["id"]
    assert ev["evaluation"] is None  # an evaluation run never triggers another


def test_router_loop_trips_looping_risk(api: Api) -> None:
    wf = api.post(
        "/v1/workflows",
        {
            "name": "loop",
            "settings": {"max_block_visits": 4},
            "blocks": [
                {"id": "start", "type": "start", "config": {"inputs": {"n": {"type": "json"}}}},
                {"id": "inc", "type": "function", "config": {"function": "inc"}},
                {
                    "id": "again",
                    "type": "router",
                    "config": {
                        "routes": [{"handle": "loop", "when": "input < 100"}],
                        "default": "done",
                    },
                },
                {"id": "end", "type": "end"},
            ],
            "edges": [
                edge("start", "n", "inc", "value"),
                edge("inc", "output", "again", "input"),
                edge("again", "loop", "inc", "value"),
                edge("again", "done", "end", "n"),
            ],
        },
    ).json()
    run = api.wait_run(api.start_run(wf["id"], {"n": 0})["id"])
    assert run["status"] == "aborted_looping_risk"
    assert run["termination_reason"] == "looping_risk"
    visits = [s for s in api.steps(run["id"]) if s["block_id"] == "inc"]
    assert len(visits) == 4
    ok = api.wait_run(api.start_run(wf["id"], {"n": 98})["id"])
    assert ok["status"] == "completed"
    assert ok["io_pairs"][0]["output"] == {"n": 100}


def test_fault_in_orchestration_ends_in_finally_safety_net(api: Api) -> None:
    wf = api.create_workflow(
        {
            "blocks": [
                {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
                {"id": "faulty", "type": "function", "config": {"function": "double"}},
                {"id": "end", "type": "end"},
            ],
            "edges": [edge("start", "x", "faulty", "value"), edge("faulty", "output", "end", "y")],
        }
    )
    run = api.wait_run(api.start_run(wf["id"], {"x": 1})["id"])
    assert run["status"] == "failed"
    assert run["termination_reason"] == "finally_safety_net"
    assert run["error"]["type"] == "InjectedFault"


def test_reaper_fails_a_run_whose_worker_died_but_not_a_waiting_one(
    api: Api, fleet: Fleet, tmp_path: Path
) -> None:
    marker = tmp_path / "pid"
    wf = api.post(
        "/v1/workflows",
        {
            "name": "doomed",
            "settings": {"stale_after_s": 1},
            "blocks": [
                {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
                {
                    "id": "slow",
                    "type": "function",
                    "config": {
                        "function": "slow",
                        "params": {"seconds": 30, "marker": str(marker)},
                    },
                },
                {"id": "end", "type": "end"},
            ],
            "edges": [edge("start", "x", "slow", "value"), edge("slow", "output", "end", "y")],
        },
    ).json()
    _, waiting = _two_turns(api)
    run_id = api.start_run(wf["id"], {"x": 1})["id"]
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(marker.read_text())
    holder = next(w for w in fleet.workers if child in w.child_pids())
    # The whole worker dies (parent and child), so nothing gives the message back.
    fleet.kill_worker(holder)
    fleet.start_worker(f"{holder.name}r")
    db = Database(Settings.from_env(fleet.env))
    try:
        with db.transaction() as s:  # both runs look idle for a minute
            s.execute(
                update(Run)
                .where(Run.id.in_([run_id, waiting["id"]]))
                .values(updated_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 1))
            )
        first = reap(db, fleet_dispatcher(fleet), default_after_s=3600)
        second = reap(db, fleet_dispatcher(fleet), default_after_s=3600)
    finally:
        db.close()
    assert (first, second) == (1, 0)
    run = api.get(f"/v1/workflows/runs/{run_id}").json()
    assert run["status"] == "failed"
    assert run["termination_reason"] == "stale_run_reaper"
    slow = by_step_id(api.steps(run_id))["slow"]
    assert slow["lifecycle"]["status"] == "cancelled"
    assert (
        api.get(f"/v1/workflows/runs/{waiting['id']}").json()["status"] == "waiting_for_user_input"
    )


def fleet_dispatcher(fleet: Fleet) -> Any:

    assert fleet.app is not None
    return fleet.app.extensions["quorum"].dispatcher


def test_comments_are_listed_in_the_run(api: Api) -> None:
    _, waiting = _two_turns(api)
    r = api.post(f"/v1/workflows/runs/{waiting['id']}/comments", {"text": "looks right"})
    assert r.status_code == 201
    named = api.post(
        f"/v1/workflows/runs/{waiting['id']}/comments", {"text": "ok", "author": "ada"}
    )
    run = api.get(f"/v1/workflows/runs/{waiting['id']}").json()
    assert [(c["display_name"], c["text"]) for c in run["comments"]][1] == ("ada", "ok")
    # The author is the key that wrote the comment, whatever name the client gave.
    prefix = "_".join(api.http.headers["Authorization"].split()[1].split("_")[:2])
    assert [c["author"] for c in run["comments"]] == [prefix, prefix]
    assert run["comments"][0]["display_name"] is None
    assert named.json()["id"] == run["comments"][1]["id"]
