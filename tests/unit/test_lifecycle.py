"""The lifecycle tables, and ``transition()`` as a compare-and-set on real SQLite rows."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from engine.db.models import Base, Organization, Run, Step, Workflow
from engine.db.session import make_engine
from engine.lifecycle import (
    OPEN_STEP_STATES,
    RUN,
    STEP,
    IllegalTransition,
    RunStatus,
    StepState,
    transition,
    transition_returning,
)

S = StepState
R = RunStatus

# The contract's table, written out independently of engine.lifecycle.
STEP_MOVES: dict[StepState, set[StepState]] = {
    S.PENDING: {S.QUEUED, S.CANCELLED, S.SKIPPED},
    S.QUEUED: {S.RUNNING, S.CANCELLED, S.SKIPPED},
    S.RUNNING: {S.COMPLETED, S.ERROR, S.CANCELLED, S.QUEUED},
    S.COMPLETED: set(),
    S.ERROR: set(),
    S.CANCELLED: set(),
    S.SKIPPED: set(),
}

# The contract: not_started -> started -> running -> {completed, failed, cancelled,
# aborted_looping_risk}; running <-> waiting_for_user_input; running <-> paused. The design
# adds what a well-run API needs around it: a run can be cancelled or failed (reaper, safety
# net, a step in flight failing) from any live status, paused before it started, and a run
# whose first settlement ends it may complete or abort straight from ``started``.
RUN_MOVES: dict[RunStatus, set[RunStatus]] = {
    R.NOT_STARTED: {R.STARTED, R.PAUSED, R.FAILED, R.CANCELLED},
    R.STARTED: {R.RUNNING, R.PAUSED, R.COMPLETED, R.ABORTED_LOOPING, R.FAILED, R.CANCELLED},
    R.RUNNING: {R.WAITING, R.PAUSED, R.COMPLETED, R.ABORTED_LOOPING, R.FAILED, R.CANCELLED},
    R.WAITING: {R.RUNNING, R.FAILED, R.CANCELLED},
    R.PAUSED: {R.RUNNING, R.FAILED, R.CANCELLED},
    R.COMPLETED: set(),
    R.FAILED: set(),
    R.CANCELLED: set(),
    R.ABORTED_LOOPING: set(),
}

CONTRACT_RUN_ARROWS = [
    (R.NOT_STARTED, R.STARTED),
    (R.STARTED, R.RUNNING),
    (R.RUNNING, R.COMPLETED),
    (R.RUNNING, R.FAILED),
    (R.RUNNING, R.CANCELLED),
    (R.RUNNING, R.ABORTED_LOOPING),
    (R.RUNNING, R.WAITING),
    (R.WAITING, R.RUNNING),
    (R.RUNNING, R.PAUSED),
    (R.PAUSED, R.RUNNING),
]

STEP_PAIRS = list(itertools.product(list(StepState), repeat=2))
RUN_PAIRS = list(itertools.product(list(RunStatus), repeat=2))


# -- the tables -------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), STEP_PAIRS, ids=lambda s: str(s))
def test_step_table_matches_contract(source: StepState, target: StepState) -> None:
    assert STEP.allowed(source, target) is (target in STEP_MOVES[source])


def test_step_table_covers_every_state_and_terminals() -> None:
    assert set(STEP.moves) == set(StepState)
    assert {s for s in StepState if STEP.is_terminal(s)} == {
        S.COMPLETED,
        S.ERROR,
        S.CANCELLED,
        S.SKIPPED,
    }
    assert frozenset({S.PENDING, S.QUEUED, S.RUNNING}) == OPEN_STEP_STATES
    for state in STEP.terminal:
        assert not STEP.moves[state]
    assert STEP.sources_of(S.QUEUED) == {S.PENDING, S.RUNNING}
    assert STEP.sources_of(S.PENDING) == frozenset()


@pytest.mark.parametrize(("source", "target"), RUN_PAIRS, ids=lambda s: str(s))
def test_run_table_matches_design(source: RunStatus, target: RunStatus) -> None:
    assert RUN.allowed(source, target) is (target in RUN_MOVES[source])


def test_run_table_contains_every_contract_arrow_and_terminals_are_final() -> None:
    for source, target in CONTRACT_RUN_ARROWS:
        assert RUN.allowed(source, target), (source, target)
    assert set(RUN.moves) == set(RunStatus)
    assert {s for s in RunStatus if RUN.is_terminal(s)} == {
        R.COMPLETED,
        R.FAILED,
        R.CANCELLED,
        R.ABORTED_LOOPING,
    }
    for state in RUN.terminal:
        assert not RUN.moves[state]
    # Nothing ever goes back to not_started or started from later.
    assert RUN.sources_of(R.NOT_STARTED) == frozenset()
    assert RUN.sources_of(R.STARTED) == {R.NOT_STARTED}


# -- transition() on rows ------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path: Path = tmp_path_factory.mktemp("lifecycle") / "rows.sqlite3"
    eng = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def ids(engine: Engine) -> dict[str, str]:
    with Session(engine) as s, s.begin():
        org = Organization(name="lifecycle")
        s.add(org)
        s.flush()
        wf = Workflow(organization_id=org.id, name="wf", draft={"blocks": [], "edges": []})
        s.add(wf)
        s.flush()
        run = Run(organization_id=org.id, workflow_id=wf.id, config={})
        s.add(run)
        s.flush()
        step = Step(run_id=run.id, step_id="a", block_id="a", block_type="function")
        s.add(step)
        s.flush()
        return {"org": org.id, "workflow": wf.id, "run": run.id, "step": step.id}


def _set(engine: Engine, model: type[Step] | type[Run], row_id: str, **values: object) -> None:
    with Session(engine) as s, s.begin():
        row = s.get(model, row_id)
        assert row is not None
        for k, v in values.items():
            setattr(row, k, v)


def _read(engine: Engine, model: type[Step] | type[Run], row_id: str) -> Any:
    with Session(engine) as s:
        row = s.scalar(select(model).where(model.id == row_id))
        assert row is not None
        return row


@pytest.mark.parametrize(("source", "target"), STEP_PAIRS, ids=lambda s: str(s))
def test_step_transition_on_a_row(
    engine: Engine, ids: dict[str, str], source: StepState, target: StepState
) -> None:
    step_id = ids["step"]
    _set(engine, Step, step_id, state=source, reason=None)
    allowed = target in STEP_MOVES[source]
    if not STEP.sources_of(target):
        # Nothing may ever move to this state (pending): asking is a programming error.
        with Session(engine) as s, s.begin(), pytest.raises(IllegalTransition):
            transition(s, STEP, Step, step_id, target)
        assert _read(engine, Step, step_id).state == source
        return
    with Session(engine) as s, s.begin():
        moved = transition(s, STEP, Step, step_id, target, values={"reason": "first"})
    assert moved == (1 if allowed else 0)
    row = _read(engine, Step, step_id)
    assert row.state == (target if allowed else source)
    assert row.reason == ("first" if allowed else None)
    # The same message again: a compare-and-set never moves a row twice.
    with Session(engine) as s, s.begin():
        again = transition(s, STEP, Step, step_id, target, values={"reason": "second"})
    assert again == 0
    row = _read(engine, Step, step_id)
    assert row.state == (target if allowed else source)
    assert row.reason == ("first" if allowed else None)


@pytest.mark.parametrize(("source", "target"), RUN_PAIRS, ids=lambda s: str(s))
def test_run_transition_on_a_row(
    engine: Engine, ids: dict[str, str], source: RunStatus, target: RunStatus
) -> None:
    run_id = ids["run"]
    _set(engine, Run, run_id, status=source)
    allowed = target in RUN_MOVES[source]
    if not RUN.sources_of(target):
        with Session(engine) as s, s.begin(), pytest.raises(IllegalTransition):
            transition(s, RUN, Run, run_id, target)
        assert _read(engine, Run, run_id).status == source
        return
    with Session(engine) as s, s.begin():
        moved = transition(s, RUN, Run, run_id, target)
    assert moved == (1 if allowed else 0)
    assert _read(engine, Run, run_id).status == (target if allowed else source)
    with Session(engine) as s, s.begin():
        assert transition(s, RUN, Run, run_id, target) == 0


def test_expect_narrows_the_sources(engine: Engine, ids: dict[str, str]) -> None:
    step_id = ids["step"]
    _set(engine, Step, step_id, state=S.RUNNING)
    with Session(engine) as s, s.begin():
        # queued is reachable from running, but the caller only accepts pending here.
        assert transition(s, STEP, Step, step_id, S.QUEUED, expect=[S.PENDING]) == 0
    assert _read(engine, Step, step_id).state == S.RUNNING
    with Session(engine) as s, s.begin():
        assert transition(s, STEP, Step, step_id, S.QUEUED, expect=[S.RUNNING]) == 1
    assert _read(engine, Step, step_id).state == S.QUEUED


@pytest.mark.parametrize(
    ("target", "expect"),
    [
        (S.QUEUED, [S.PENDING, S.COMPLETED]),  # completed -> queued never allowed
        (S.RUNNING, [S.PENDING]),  # running only from queued
        (S.COMPLETED, [S.QUEUED]),
        (S.SKIPPED, [S.RUNNING]),
        (S.PENDING, [S.QUEUED]),
    ],
)
def test_expect_cannot_widen(
    engine: Engine, ids: dict[str, str], target: StepState, expect: list[StepState]
) -> None:
    step_id = ids["step"]
    _set(engine, Step, step_id, state=expect[-1])
    with Session(engine) as s, s.begin(), pytest.raises(IllegalTransition):
        transition(s, STEP, Step, step_id, target, expect=expect)
    assert _read(engine, Step, step_id).state == expect[-1]


def test_attempt_fences_the_move(engine: Engine, ids: dict[str, str]) -> None:
    step_id = ids["step"]
    _set(engine, Step, step_id, state=S.RUNNING, attempt=2)
    with Session(engine) as s, s.begin():
        stale = transition(s, STEP, Step, step_id, S.COMPLETED, attempt=1, values={"reason": "x"})
    assert stale == 0
    row = _read(engine, Step, step_id)
    assert (row.state, row.reason) == (S.RUNNING, None)
    with Session(engine) as s, s.begin():
        current = transition(s, STEP, Step, step_id, S.COMPLETED, attempt=2, values={"reason": "y"})
    assert current == 1
    row = _read(engine, Step, step_id)
    assert (row.state, row.reason) == (S.COMPLETED, "y")


def test_transition_of_many_rows_moves_only_the_eligible(
    engine: Engine, ids: dict[str, str]
) -> None:
    with Session(engine) as s, s.begin():
        rows = [
            Step(
                run_id=ids["run"],
                step_id=f"many-{st}",
                block_id="m",
                block_type="function",
                state=st,
            )
            for st in (S.PENDING, S.QUEUED, S.RUNNING, S.COMPLETED)
        ]
        s.add_all(rows)
        s.flush()
        row_ids = [r.id for r in rows]
    with Session(engine) as s, s.begin():
        moved = transition(s, STEP, Step, row_ids, S.SKIPPED)
    assert moved == 2  # pending and queued; running and completed cannot be skipped
    with Session(engine) as s:
        states = dict(s.execute(select(Step.step_id, Step.state).where(Step.id.in_(row_ids))).all())
    assert states == {
        "many-pending": S.SKIPPED,
        "many-queued": S.SKIPPED,
        "many-running": S.RUNNING,
        "many-completed": S.COMPLETED,
    }
    with Session(engine) as s, s.begin():
        assert transition(s, STEP, Step, [], S.SKIPPED) == 0


def test_a_loaded_row_takes_the_values_of_its_move(engine: Engine, ids: dict[str, str]) -> None:
    step_id = ids["step"]
    _set(engine, Step, step_id, state=S.QUEUED, attempt=0)
    with Session(engine) as s, s.begin():
        step = s.get(Step, step_id)
        assert step is not None
        assert transition(s, STEP, Step, step_id, S.RUNNING, values={"worker": "w:1"}) == 1
        # No refresh: the object in the session already holds what was written.
        assert (step.state, step.worker) == (S.RUNNING, "w:1")
        assert step not in s.dirty


def test_transition_returning_bumps_the_attempt_and_returns_the_row(
    engine: Engine, ids: dict[str, str]
) -> None:
    step_id = ids["step"]
    _set(engine, Step, step_id, state=S.QUEUED, attempt=3)
    with Session(engine) as s, s.begin():
        row = transition_returning(
            s, STEP, Step, step_id, S.RUNNING, values={"worker": "w:2"}, bump_attempt=True
        )
        assert row is not None
        assert (row.id, row.state, row.attempt, row.worker) == (step_id, S.RUNNING, 4, "w:2")
        again = transition_returning(s, STEP, Step, step_id, S.RUNNING, expect=[S.QUEUED])
        assert again is None  # no longer queued: the compare-and-set refuses
    assert _read(engine, Step, step_id).attempt == 4
