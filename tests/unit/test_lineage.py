"""Checkpoint runs read the turns they inherit where they are (engine.lineage).

The reference is the copying fork the engine used to do (``engine.testing.copy_inherited``):
the same parent is forked both ways, both children run on, and every read of the contract
must answer the same. The one difference is stated, not hidden: an inherited step keeps
its parent's row id (a copy got a fresh one), and is shown with the child's ``run_id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, insert, select

from api.app import create_app
from engine.auth import issue_key
from engine.db.models import Run, Step, Turn
from engine.events import since
from engine.functions import FunctionRegistry
from engine.handoff import mark_queued
from engine.ids import new_id
from engine.lineage import sees
from engine.ports import WorkKind
from engine.run.fork import fork_run
from engine.settings import Settings
from engine.testing import InProcessEngine, copy_inherited


def block(bid: str, btype: str, **config: Any) -> dict[str, Any]:
    return {"id": bid, "type": btype, "config": config}


def edge(source: str, sh: str, target: str, th: str) -> dict[str, str]:
    return {"source": source, "source_handle": sh, "target": target, "target_handle": th}


# Three turns; the blocks of turns 1 and 2 read outputs of earlier turns (prep, mid), and
# turn 0 holds for_each iterations, so a child depends on what it inherits.
GRAPH = {
    "blocks": [
        block("start", "start", inputs={"x": {"type": "json"}}),
        block("prep", "function", function="pair"),
        block("each", "for_each", body=["double"]),
        block("double", "function", function="double"),
        block("ask1", "human_input"),
        block("mid", "function", function="merge"),
        block("ask2", "human_input"),
        block("end", "end"),
    ],
    "edges": [
        edge("start", "x", "prep", "value"),
        edge("prep", "output", "each", "items"),
        edge("each", "item", "double", "value"),
        edge("each", "results", "ask1", "prompt"),
        edge("ask1", "response", "mid", "answer"),
        edge("prep", "output", "mid", "earlier"),
        edge("mid", "output", "ask2", "prompt"),
        edge("ask2", "response", "end", "last"),
        edge("mid", "output", "end", "mid"),
        edge("prep", "output", "end", "first"),
    ],
}


def _functions() -> FunctionRegistry:
    functions = FunctionRegistry()
    functions.register("pair", lambda inputs: [inputs["value"], inputs["value"] + 1])
    functions.register("double", lambda inputs: inputs["value"] * 2)
    functions.register("merge", lambda inputs: {"answer": inputs["answer"], "n": inputs["earlier"]})
    return functions


class World:
    def __init__(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=str(tmp_path), rate_limit_per_minute=0)
        self.engine = InProcessEngine(settings, functions=_functions())
        self.app: Flask = create_app(settings, dispatcher=self.engine.dispatcher)
        with self.engine.db.transaction() as s:
            key = issue_key(s, "in-process").key
        self.client: FlaskClient = self.app.test_client()
        self.headers = {"Authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        r = self.client.open(path, method=method, json=body, headers=self.headers)
        assert r.status_code == status, r.get_json()
        return r.get_json()

    def get(self, path: str, **query: Any) -> Any:
        r = self.client.get(path, query_string=query, headers=self.headers)
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    def answer(self, run_id: str, value: Any) -> None:
        self.call("POST", f"/v1/workflows/runs/{run_id}/input", {"input": value}, 202)
        self.engine.drain()

    def parent(self) -> str:
        wf = self.engine.workflow(GRAPH)
        run = self.call("POST", "/v1/workflows/runs", {"workflow_id": wf, "inputs": {"x": 3}}, 202)
        self.engine.drain()
        self.answer(run["id"], {"ok": 1})
        self.answer(run["id"], {"ok": 2})
        assert self.run(run["id"])["status"] == "completed"
        return str(run["id"])

    def fork_by_reference(self, parent: str, k: int, value: Any) -> str:
        url = f"/v1/workflows/runs/{parent}/checkpoint"
        child = self.call("POST", url, {"resume_turn_index": k, "input": value}, 202)
        self.engine.drain()
        return str(child["id"])

    def fork_by_copy(self, parent: str, k: int, value: Any) -> str:
        with self.engine.db.transaction() as s:
            started = fork_run(s, self.engine.org_id, parent, resume_turn_index=k, input=value)
            copy_inherited(s, started.run.id)
            child, work = started.run.id, started.work
        self.engine.dispatcher.dispatch(work)
        with self.engine.db.transaction() as s:
            mark_queued(s, Step, [w.id for w in work if w.kind == WorkKind.STEP])
        self.engine.drain()
        return str(child)

    def run(self, run_id: str) -> Any:
        return self.get(f"/v1/workflows/runs/{run_id}")

    def steps(self, run_id: str, **query: Any) -> list[Any]:
        page = self.get(f"/v1/workflows/runs/{run_id}/steps", **{"limit": 200, **query})
        return list(page["data"])

    def events(self, run_id: str) -> list[tuple[str, Any]]:
        with self.engine.db.transaction() as s:
            return [(e.kind, e.data) for e in since(s, run_id, 0)]

    def close(self) -> None:
        self.app.extensions["quorum"].close()
        self.engine.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


TIMES = ("created_at", "updated_at", "completed_at", "started_at", "queued_at", "duration_ms")


def _plain(value: Any, *, drop: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v, drop=drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list | tuple):
        return [_plain(v, drop=drop) for v in value]
    return value


def _own(step: dict[str, Any]) -> Any:
    """A step the child ran itself: what does not depend on when or under which ids."""
    return _plain(step, drop=(*TIMES, "id", "run_id", "worker"))


def _walk(world: World, run_id: str, order: str) -> list[str]:
    """Every step id, three at a time through the ``after`` cursors."""
    ids: list[str] = []
    after: str | None = None
    while True:
        query: dict[str, Any] = {"limit": 3, "order": order}
        if after:
            query["after"] = after
        page = world.get(f"/v1/workflows/runs/{run_id}/steps", **query)
        ids += [x["id"] for x in page["data"]]
        after = page["next_after"]
        if not page["has_more"]:
            return ids


def _compare_children(world: World, parent: str, k: int, value: Any) -> str:
    before = world.steps(parent)
    ref = world.fork_by_reference(parent, k, value)
    copy = world.fork_by_copy(parent, k, value)
    if k < 2:
        world.answer(ref, {"ok": 9})
        world.answer(copy, {"ok": 9})
    runs = {name: world.run(run_id) for name, run_id in (("ref", ref), ("copy", copy))}
    # The run: the same answer, but for its id and times; inherited io pairs as the parent's.
    parent_pairs = world.run(parent)["io_pairs"]
    for got in runs.values():
        assert got["status"] == "completed", got
        assert got["io_pairs"][:k] == parent_pairs[:k]
    drop = (*TIMES, "id")
    assert _plain(runs["ref"], drop=drop) == _plain(runs["copy"], drop=drop)
    assert runs["ref"]["progress"]["steps_total"] == len(world.steps(ref))
    assert runs["ref"]["token_usage"] == runs["copy"]["token_usage"]
    assert runs["ref"]["latency_stats"] == runs["copy"]["latency_stats"]
    # The steps: inherited ones exactly as the parent's (its row ids kept, the child's run
    # id), the copy's ones under fresh ids; the ones the child ran, the same either way.
    ref_steps, copy_steps = world.steps(ref), world.steps(copy)
    parent_steps = {x["step_id"]: x for x in world.steps(parent)}
    assert sorted(x["step_id"] for x in ref_steps) == sorted(x["step_id"] for x in copy_steps)
    by_path = {x["step_id"]: x for x in copy_steps}
    for step in ref_steps:
        twin = by_path[step["step_id"]]
        if step["turn_index"] < k:
            source = parent_steps[step["step_id"]]
            assert step == {**source, "run_id": ref}
            assert twin == {**source, "run_id": copy, "id": twin["id"]}
        else:
            assert step["run_id"] == ref and _own(step) == _own(twin)
    # Paging: every step once, in id order, whichever way it is walked.
    ids = sorted(x["id"] for x in ref_steps)
    assert _walk(world, ref, "asc") == ids
    assert _walk(world, ref, "desc") == ids[::-1]
    back = world.get(f"/v1/workflows/runs/{ref}/steps", limit=2, order="asc", before=ids[3])
    assert [x["id"] for x in back["data"]] == ids[1:3] and back["list_metadata"]["before"]
    # Events: the same changes, in the same order.
    event_drop = (*TIMES, "id", "run_id", "seq", "at")
    assert _plain(world.events(ref), drop=event_drop) == _plain(world.events(copy), drop=event_drop)
    _compare_executions(world, ref, copy)
    assert world.steps(parent) == before  # the parent's rows were never written
    return ref


def _compare_executions(world: World, ref: str, copy: str) -> None:
    # An inherited block (every iteration of the body listed), one iteration re-run, and a
    # block of a later turn that reads an inherited output.
    answers: list[list[Any]] = []
    for run_id in (ref, copy):
        url = "/v1/workflows/blocks/executions"
        body: dict[str, Any] = {"run_id": run_id, "block_id": "double"}
        choose = world.call("POST", url, body, 422)
        chosen = world.call("POST", url, {**body, "step_id": "each[1]/double"}, 202)
        prep = world.call("POST", url, {"run_id": run_id, "block_id": "prep"}, 202)
        world.engine.drain()
        done = [world.get(f"{url}/{x['id']}") for x in (chosen, prep)]
        assert {x["source_run_id"] for x in done} == {run_id}
        answers.append(
            [choose["available_iterations"], *_plain(done, drop=(*TIMES, "id", "source_run_id"))]
        )
    assert answers[0] == answers[1]
    assert answers[0][0] == [
        {"step_id": "each[0]/double", "iteration": "each[0]"},
        {"step_id": "each[1]/double", "iteration": "each[1]"},
    ]
    listed = world.get("/v1/workflows/blocks/executions", run_id=ref)["data"]
    assert len(listed) == 2


def test_a_checkpoint_run_reads_as_if_its_turns_were_copied(world: World) -> None:
    parent = world.parent()
    ref = _compare_children(world, parent, 1, {"ok": 5})
    end = {x["step_id"]: x for x in world.steps(ref)}["t2/end"]
    # Turn 2 read the outputs of turn 0 (inherited) and turn 1 (its own).
    assert end["inputs"]["first"]["data"] == [3, 4]
    assert end["inputs"]["mid"]["data"] == {"answer": {"ok": 5}, "n": [3, 4]}


def test_a_fork_of_a_fork_inherits_from_both(world: World) -> None:
    parent = world.parent()
    child = world.fork_by_reference(parent, 1, {"ok": 5})
    world.answer(child, {"ok": 6})
    # Turn 0 comes from the parent, turn 1 from the child, through one lineage.
    grandchild = _compare_children(world, child, 2, {"ok": 7})
    with world.engine.db.transaction() as s:
        lineage = s.get(Run, grandchild)
        assert lineage is not None and lineage.lineage == [[child, 2], [parent, 1]]
    steps = {x["step_id"]: x for x in world.steps(grandchild)}
    assert steps["t1/mid"]["outputs"] == {
        "output": {"type": "json", "data": {"answer": {"ok": 5}, "n": [3, 4]}}
    }
    assert steps["t2/end"]["inputs"]["last"]["data"] == {"ok": 7}
    # A fork of the grandchild below its own fork index reaches back to the first parent.
    again = _compare_children(world, grandchild, 1, {"ok": 8})
    with world.engine.db.transaction() as s:
        run = s.get(Run, again)
        assert run is not None and run.lineage == [[grandchild, 1], [child, 1], [parent, 1]]


def test_a_run_without_a_lineage_sees_only_its_own_rows(world: World) -> None:
    # Evaluation runs name the evaluated run as original_run_id but have no lineage, and
    # checkpoint runs made before lineages hold copies: neither may read a parent's rows.
    parent = world.parent()
    child = world.fork_by_reference(parent, 2, {"ok": 5})
    with world.engine.db.transaction() as s:
        run = s.get(Run, child)
        assert run is not None and run.original_run_id == parent
        run.lineage = None
        run.is_evaluation = True
    assert [x["turn_index"] for x in world.run(child)["io_pairs"]] == [2]
    assert {x["turn_index"] for x in world.steps(child)} == {2}


def _seed_parent(world: World, iterations: int) -> str:
    """A completed parent, its for_each widened to ``iterations`` rows in turn 0."""
    parent = world.parent()
    with world.engine.db.transaction() as s:
        template = s.scalars(
            select(Step).where(Step.run_id == parent, Step.step_id == "each[1]/double")
        ).one()
        base = {c.key: getattr(template, c.key) for c in Step.__table__.columns}
        rows = [
            {**base, "id": new_id(), "step_id": f"each[{i}]/double", "scope": f"each[{i}]"}
            for i in range(2, iterations)
        ]
        if rows:
            s.execute(insert(Step), rows)
    return parent


def test_forking_writes_the_same_rows_whatever_the_parent_size(world: World) -> None:
    writes: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(statement.split("(")[0].strip())

    engine = world.engine.db.engine
    counted: dict[int, tuple[list[str], int, int]] = {}
    for size in (10, 1000):
        parent = _seed_parent(world, size)
        with world.engine.db.transaction() as s:
            rows_before = s.scalar(select(func.count()).select_from(Step)) or 0
            turns_before = s.scalar(select(func.count()).select_from(Turn)) or 0
        writes.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            child = world.call(
                "POST",
                f"/v1/workflows/runs/{parent}/checkpoint",
                {"resume_turn_index": 1, "input": {"ok": 1}},
                202,
            )
        finally:
            event.remove(engine, "before_cursor_execute", count)
        with world.engine.db.transaction() as s:
            new_steps = (s.scalar(select(func.count()).select_from(Step)) or 0) - rows_before
            new_turns = (s.scalar(select(func.count()).select_from(Turn)) or 0) - turns_before
        assert child["progress"]["steps_total"] >= size
        counted[size] = (sorted(writes), new_steps, new_turns)
        world.engine.dispatcher.queue.clear()
    assert counted[10] == counted[1000]
    assert counted[10][1] < 10 and counted[10][2] == 1


@pytest.mark.parametrize("below", [1, 3, 32, 33, 45])
def test_a_lineage_sees_exactly_the_turns_below_its_fork(world: World, below: int) -> None:
    # Short lineages name their turns one by one, long ones by a range: the same rows.
    parent = world.parent()
    with world.engine.db.transaction() as s:
        s.add_all(Turn(run_id=parent, turn_index=i) for i in range(3, 50))
        s.flush()
        seen = s.scalars(
            select(Turn.turn_index).where(sees(Turn, "no-such-run", ((parent, below),)))
        ).all()
    assert sorted(seen) == list(range(below))


def test_cancelling_the_parent_leaves_what_the_child_inherited(world: World) -> None:
    wf = world.engine.workflow(GRAPH)
    run = world.call("POST", "/v1/workflows/runs", {"workflow_id": wf, "inputs": {"x": 3}}, 202)
    parent = run["id"]
    world.engine.drain()
    world.answer(parent, {"ok": 1})  # the parent now waits in turn 1
    child = world.fork_by_reference(parent, 1, {"ok": 5})
    inherited = [x for x in world.steps(child) if x["turn_index"] == 0]
    world.call("POST", f"/v1/workflows/runs/{parent}/cancel", None, 200)
    world.engine.drain()
    assert world.run(parent)["status"] == "cancelled"
    world.answer(child, {"ok": 6})
    done = world.run(child)
    assert done["status"] == "completed"
    assert [x for x in world.steps(child) if x["turn_index"] == 0] == inherited
    assert done["progress"]["steps_total"] == done["progress"]["steps_done"]
    assert done["progress"]["steps_total"] == len(world.steps(child))


def test_reading_a_fork_of_a_fork_takes_as_many_statements_as_reading_its_parent(
    world: World,
) -> None:
    parent = world.parent()
    child = world.fork_by_reference(parent, 2, {"ok": 5})
    grandchild = world.fork_by_reference(child, 1, {"ok": 6})
    world.answer(grandchild, {"ok": 7})
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE")):
            statements.append(statement)

    engine = world.app.extensions["quorum"].db.engine
    counted: dict[str, list[int]] = {}
    event.listen(engine, "before_cursor_execute", count)
    try:
        for run_id in (parent, grandchild):
            counted[run_id] = []
            for read in (world.run, world.steps, lambda r: world.steps(r, limit=2, after=r)):
                statements.clear()
                read(run_id)
                counted[run_id].append(len(statements))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert counted[grandchild] == counted[parent]
    assert max(counted[parent]) <= 3
