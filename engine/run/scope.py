"""Creating a run's steps and reading them back, inside the transaction holding its lock.

The base of the scheduler: what it writes (step rows, counters, the messages to send
after commit) and what it reads (the newest step of a block in a scope, open steps).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from engine.db.models import Run, Step
from engine.events import record_step_rows
from engine.execute import unwrap
from engine.graph.model import Block, Graph
from engine.ids import new_id
from engine.lifecycle import OPEN_STEP_STATES, STEP, RunStatus, StepState
from engine.lineage import seen_by
from engine.ports import Work, WorkKind
from engine.run.paths import LoopingRisk, Resolved, split_scope, step_path
from engine.storable import check_step_id


@dataclass(kw_only=True)
class RunSteps:
    session: Session
    run: Run
    graph: Graph
    now: datetime
    max_visits: int = 10
    dispatchable: list[Work] = field(default_factory=list)
    # Steps inserted by this scheduler, and how many of them are open in the current turn
    # (while any is, the turn cannot be over: no need to count open steps).
    created: set[str] = field(default_factory=set)
    opened: int = 0
    # A worker that will run one new step itself: the first lone successor (see _follow)
    # is created already claimed by it (running, attempt 1) instead of queued, and kept
    # in ``claimed``; it gets no message.
    claim_for: str | None = None
    claimed: dict[str, Any] | None = None
    _items_cache: dict[str, list[Any]] = field(default_factory=dict)

    def step_resolved(self, step: Resolved) -> None:
        """Schedule what ``step`` unblocks (the scheduler's; iterations call it back)."""
        raise NotImplementedError

    # -- creating steps -------------------------------------------------------------

    def _state_for_new(self) -> StepState:
        # A paused run schedules nothing new: its steps wait as pending until resume.
        return StepState.PENDING if self.run.status == RunStatus.PAUSED else StepState.QUEUED

    def add_steps(self, rows: Sequence[dict[str, Any]], *, inserted: bool = False) -> None:
        """Insert steps in one statement (fan-outs can be thousands of rows)."""
        if not rows:
            return
        if not inserted:
            self.session.execute(insert(Step), list(rows))
        record_step_rows(self.session, self.run.id, rows)
        self.created.update(r["id"] for r in rows)
        self.opened += sum(
            1
            for r in rows
            if r["state"] in OPEN_STEP_STATES and r["turn_index"] == self.run.current_turn
        )
        done = sum(1 for r in rows if r["state"] in STEP.terminal)
        self.run.steps_total += len(rows)
        self.run.steps_done += done
        for r in rows:
            if r["state"] == StepState.QUEUED:
                self.dispatchable.append(Work(kind=WorkKind.STEP, id=r["id"]))

    def step_row(
        self,
        block: Block,
        *,
        scope: str,
        visit: int,
        inputs: dict[str, Any],
        state: StepState | None = None,
        reason: str | None = None,
        turn: int | None = None,
    ) -> dict[str, Any]:
        turn = self.run.current_turn if turn is None else turn
        state = state or self._state_for_new()
        if visit > self.max_visits:
            raise LoopingRisk(block.id, visit)
        path = step_path(turn, scope, block.id, visit)
        check_step_id(path)  # deep nesting can outgrow the column: fail the step that made it
        return {
            "id": new_id(),
            "run_id": self.run.id,
            "turn_index": turn,
            "step_id": path,
            "scope": scope,
            "block_id": block.id,
            "block_type": block.type,
            "visit": visit,
            "inputs": inputs,
            "state": state,
            "reason": reason,
            "attempt": 0,
            "n_consensus": 1,
            "open_children": 0,
            "created_at": self.now,
            "queued_at": self.now if state == StepState.QUEUED else None,
            "completed_at": self.now if state in STEP.terminal else None,
        }

    # -- reading steps ----------------------------------------------------------------

    def _iteration_item(self, scope: str) -> Any:
        parent, fe, index = split_scope(scope)
        key = f"{parent}|{fe}"
        if key not in self._items_cache:
            owner = self._latest(parent, self.run.current_turn, [fe]).get(fe)
            items = unwrap(owner.inputs if owner else {}).get("items")
            self._items_cache[key] = items if isinstance(items, list) else []
        items = self._items_cache[key]
        return items[index] if index < len(items) else None

    def _loop_busy(self, block_id: str, scope: str, turn: int) -> bool:
        comp = [b for b in self.graph.cyclic_blocks if _same_component(self.graph, b, block_id)]
        count = self.session.scalar(
            select(func.count())
            .select_from(Step)
            .where(
                Step.run_id == self.run.id,
                Step.turn_index == turn,
                Step.scope == scope,
                Step.block_id.in_(comp),
                Step.state.in_(sorted(OPEN_STEP_STATES)),
            )
        )
        return bool(count)

    def _latest(
        self, scope: str, turn: int, block_ids: Iterable[str], *, same_turn: bool = False
    ) -> dict[str, Step]:
        """The newest step of each block in ``scope`` (this turn, or earlier turns too)."""
        ids = sorted(set(block_ids))
        if not ids:
            return {}
        self._flush_steps()
        stmt = (
            select(Step)
            .where(
                # Earlier turns may be inherited from the run's ancestors (engine.lineage).
                seen_by(Step, self.run),
                Step.scope == scope,
                Step.block_id.in_(ids),
                Step.turn_index == turn if same_turn else Step.turn_index <= turn,
            )
            .order_by(Step.turn_index.desc(), Step.visit.desc())
            # Rows moved by compare-and-set UPDATEs in this transaction must be re-read.
            .execution_options(populate_existing=True)
        )
        found: dict[str, Step] = {}
        for s in self.session.scalars(stmt):
            found.setdefault(s.block_id, s)
        return found

    def _flush_steps(self) -> None:
        # Queries on steps must see step rows changed through the ORM in this transaction;
        # the run's own counters are flushed once, at commit, not before every query.
        if any(isinstance(o, Step) for o in (*self.session.new, *self.session.dirty)):
            self.session.flush()

    def open_steps(self, *, scope: str | None = None) -> int:
        self._flush_steps()
        stmt = (
            select(func.count())
            .select_from(Step)
            .where(
                Step.run_id == self.run.id,
                Step.turn_index == self.run.current_turn,
                Step.state.in_(sorted(OPEN_STEP_STATES)),
            )
        )
        if scope is not None:
            stmt = stmt.where(Step.scope == scope)
        return int(self.session.scalar(stmt) or 0)


def _same_component(graph: Graph, a: str, b: str) -> bool:
    for comp in graph._sccs:
        if a in comp:
            return b in comp
    return False
