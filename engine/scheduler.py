"""Deciding what runs next, inside the transaction that holds the run's lock.

When a step ends, every block downstream of it is considered. An acyclic block is a
join: it is scheduled once, when every incoming edge is resolved, and runs if at least
one of them is active (else it is ``skipped`` and the skip propagates). A block on a
cycle (which always passes through a router) runs again each time an active edge
reaches it. ``for_each`` iterations run in their own scope ("pages[2]") and are
gathered through a counter on the for_each step, never by a blocking join.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.db.models import Run, Step, Turn
from engine.events import record_step_rows, record_steps
from engine.execute import unwrap, wrap
from engine.graph.model import Block, Edge, Graph
from engine.ids import new_id
from engine.lifecycle import OPEN_STEP_STATES, RUN, STEP, RunStatus, StepState, transition
from engine.lineage import seen_by
from engine.ports import Work, WorkKind
from engine.storable import check_step_id

_SCOPE_TAIL = re.compile(r"^(?:(?P<parent>.*)/)?(?P<fe>[a-z][a-z0-9_-]*)\[(?P<index>\d+)\]$")


# A completed human_input step whose answer has not arrived yet.
AWAITING = "awaiting_input"
ANSWERED = "answered"


class LoopingRisk(Exception):
    def __init__(self, block_id: str, visits: int) -> None:
        super().__init__(f"block {block_id!r} would run {visits} times in one turn")
        self.block_id = block_id


def step_path(turn: int, scope: str, block_id: str, visit: int) -> str:
    name = block_id if visit <= 1 else f"{block_id}~{visit}"
    parts = [f"t{turn}"] if turn else []
    if scope:
        parts.append(scope)
    parts.append(name)
    return "/".join(parts)


def split_scope(scope: str) -> tuple[str, str, int]:
    """``"a[1]/pages[2]"`` -> (parent scope ``"a[1]"``, for_each id ``"pages"``, index 2)."""
    m = _SCOPE_TAIL.match(scope)
    if m is None:
        raise ValueError(f"not an iteration scope: {scope!r}")
    return m.group("parent") or "", m.group("fe"), int(m.group("index"))


@dataclass(kw_only=True)
class Resolved:
    """What the scheduler needs of an ended step (its row may not be flushed yet)."""

    id: str
    block_id: str
    scope: str
    turn: int
    visit: int
    state: str
    active: tuple[str, ...]
    outputs: dict[str, Any]


@dataclass(kw_only=True)
class Scheduler:
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

    # -- after a step ended -----------------------------------------------------------

    def step_resolved(self, step: Resolved) -> None:
        """Schedule what ``step`` unblocks, then close its iteration or turn if idle."""
        self._propagate(step)
        if step.scope:
            self._maybe_finish_iteration(step.scope)

    def _propagate(self, step: Resolved) -> None:
        edges = [
            e
            for e in self.graph.outgoing(step.block_id)
            if not (
                self.graph.by_id[step.block_id].type == "for_each" and e.source_handle == "item"
            )
        ]
        targets = list(dict.fromkeys(e.target for e in edges))
        cyclic = [t for t in targets if t in self.graph.cyclic_blocks]
        joins = [t for t in targets if t not in self.graph.cyclic_blocks]
        # Loop re-entries first: a join behind a loop must see that the loop goes on.
        for target in cyclic:
            for e in edges:
                if (
                    e.target == target
                    and step.state == StepState.COMPLETED
                    and e.source_handle in step.active
                ):
                    self._enter_cyclic(self.graph.by_id[target], step, e)
        skipped: list[Resolved] = []
        for target in joins:
            row = self._follow(self.graph.by_id[target], step)
            if row is False:
                row = self._try_join(self.graph.by_id[target], step.scope, step.turn)
            if row is not None and row["state"] == StepState.SKIPPED:
                skipped.append(_resolved_from_row(row))
        for s in skipped:
            self._propagate(s)

    def _enter_cyclic(self, block: Block, trigger: Resolved, edge: Edge) -> None:
        latest = self._latest(trigger.scope, trigger.turn, [block.id], same_turn=True)
        visit = latest[block.id].visit + 1 if block.id in latest else 1
        inputs: dict[str, Any] = {}
        others = [e for e in self.graph.incoming(block.id) if e is not edge]
        sources = self._latest(trigger.scope, trigger.turn, [e.source for e in others])
        for e in others:
            src = sources.get(e.source)
            if (
                src is not None
                and src.state == StepState.COMPLETED
                and e.source_handle in (src.active_output_handles or [])
            ):
                inputs[e.target_handle] = (src.outputs or {}).get(e.source_handle)
        inputs[edge.target_handle] = wrap({"_": trigger.outputs.get(edge.source_handle)})["_"]
        self.add_steps([self.step_row(block, scope=trigger.scope, visit=visit, inputs=inputs)])

    def _follow(self, block: Block, step: Resolved) -> dict[str, Any] | Literal[False] | None:
        """A block whose one input is ``step``'s: schedule it without reading anything.

        ``step`` just ended, so it is the only source and its outputs are at hand; a second
        scheduling of the block in this turn is refused by the (run_id, step_id) key.
        Returns False when the block has other inputs (then it is a real join).
        """
        incoming = self.graph.incoming(block.id)
        if len(incoming) != 1:
            return False
        e = incoming[0]
        if (
            e.source != step.block_id
            or e.source in self.graph.cyclic_blocks
            or self.graph.by_id[e.source].type == "start"  # stores its inputs as given
            or self._is_item_edge(e, step.scope)
        ):
            return False
        if step.state == StepState.COMPLETED and e.source_handle in step.active:
            value = wrap({"_": step.outputs.get(e.source_handle)})["_"]
            row = self.step_row(block, scope=step.scope, visit=1, inputs={e.target_handle: value})
            if self.claim_for and self.claimed is None and row["state"] == StepState.QUEUED:
                row.update(
                    state=StepState.RUNNING,
                    attempt=1,
                    worker=self.claim_for,
                    started_at=self.now,
                )
                self.claimed = row
        else:
            row = self.step_row(
                block,
                scope=step.scope,
                visit=1,
                inputs={},
                state=StepState.SKIPPED,
                reason="inactive_inputs",
            )
        done = self.session.execute(_insert_once(self.session.get_bind().dialect.name), row)
        if not getattr(done, "rowcount", 0):
            if self.claimed is row:
                self.claimed = None
            return None  # already scheduled in this turn: a join runs once
        self.add_steps([row], inserted=True)
        return row

    def _try_join(self, block: Block, scope: str, turn: int) -> dict[str, Any] | None:
        incoming = self.graph.incoming(block.id)
        # The join's own newest step and its sources' in one read.
        sources = self._latest(scope, turn, [block.id, *(e.source for e in incoming)])
        own = sources.pop(block.id, None)
        if own is not None and own.turn_index == turn:
            return None  # already scheduled (or skipped) in this turn: a join runs once
        inputs: dict[str, Any] = {}
        any_active = False
        for e in incoming:
            if self._is_item_edge(e, scope):
                inputs[e.target_handle] = wrap({"_": self._iteration_item(scope)})["_"]
                any_active = True
                continue
            src = sources.get(e.source)
            if src is None or src.state in OPEN_STEP_STATES:
                return None
            active = src.state == StepState.COMPLETED and e.source_handle in (
                src.active_output_handles or []
            )
            if (
                not active
                and e.source in self.graph.cyclic_blocks
                and self._loop_busy(e.source, scope, turn)
            ):
                return None  # the loop may still come round and activate this edge
            if active:
                any_active = True
                inputs.setdefault(e.target_handle, (src.outputs or {}).get(e.source_handle))
        if any_active:
            row = self.step_row(block, scope=scope, visit=1, inputs=inputs)
        else:
            row = self.step_row(
                block,
                scope=scope,
                visit=1,
                inputs={},
                state=StepState.SKIPPED,
                reason="inactive_inputs",
            )
        self.add_steps([row])
        return row

    def _is_item_edge(self, e: Edge, scope: str) -> bool:
        if not scope or e.source_handle != "item":
            return False
        _, fe, _ = split_scope(scope)
        return e.source == fe

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

    # -- iterations and turns -----------------------------------------------------------

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

    def fan_out(self, fe_step: Resolved, items: list[Any]) -> None:
        """Start every iteration of a for_each: one bulk insert, one batch of messages."""
        block = self.graph.by_id[fe_step.block_id]
        body = [str(b) for b in block.config.get("body") or []]
        entries = [
            self.graph.by_id[b]
            for b in body
            if self.graph.incoming(b)
            and all(
                e.source == block.id and e.source_handle == "item" for e in self.graph.incoming(b)
            )
        ]
        prefix = f"{fe_step.scope}/" if fe_step.scope else ""
        rows = [
            self.step_row(
                b,
                scope=f"{prefix}{block.id}[{i}]",
                visit=1,
                inputs={
                    e.target_handle: {"type": "json", "data": item}
                    for e in self.graph.incoming(b.id)
                },
            )
            for i, item in enumerate(items)
            for b in entries
        ]
        self.session.execute(
            update(Step).where(Step.id == fe_step.id).values(open_children=len(items))
        )
        self.add_steps(rows)

    def _maybe_finish_iteration(self, scope: str) -> None:
        if self.open_steps(scope=scope):
            return
        parent, fe, _ = split_scope(scope)
        fe_step = self._latest(parent, self.run.current_turn, [fe], same_turn=True).get(fe)
        if fe_step is None or fe_step.state != StepState.RUNNING:
            return
        remaining = int(fe_step.open_children) - 1
        self.session.execute(
            update(Step).where(Step.id == fe_step.id).values(open_children=remaining)
        )
        if remaining > 0:
            return
        results = self._gather(fe_step)
        outputs = {"results": results}
        moved = transition(
            self.session,
            STEP,
            Step,
            fe_step.id,
            StepState.COMPLETED,
            expect=[StepState.RUNNING],
            values={
                "outputs": wrap(outputs),
                "active_output_handles": ["results"],
                "completed_at": self.now,
                "duration_ms": _ms(fe_step.started_at, self.now),
            },
        )
        if moved:
            self.run.steps_done += 1
            record_steps(self.session, self.run.id, [fe_step.id])
            self.step_resolved(
                Resolved(
                    id=fe_step.id,
                    block_id=fe,
                    scope=parent,
                    turn=fe_step.turn_index,
                    visit=fe_step.visit,
                    state=StepState.COMPLETED,
                    active=("results",),
                    outputs=outputs,
                )
            )

    def _gather(self, fe_step: Step) -> list[Any]:
        collect = self.graph.collect_block(fe_step.block_id)
        prefix = f"{fe_step.scope}/" if fe_step.scope else ""
        base = f"{prefix}{fe_step.block_id}["
        rows = self.session.execute(
            select(Step.scope, Step.state, Step.outputs, Step.visit)
            .where(
                Step.run_id == self.run.id,
                Step.turn_index == fe_step.turn_index,
                Step.block_id == collect,
                Step.scope.like(base + "%"),
            )
            .order_by(Step.visit)
        ).all()
        results: list[Any] = [None] * len(unwrap(fe_step.inputs).get("items") or [])
        for scope, state, outputs, _visit in rows:
            tail = scope[len(base) :]
            if not tail.endswith("]") or not tail[:-1].isdigit():
                continue
            i = int(tail[:-1])
            if i < len(results) and state == StepState.COMPLETED:
                data = unwrap(outputs)
                results[i] = data.get("output") if set(data) == {"output"} else data
        return results

    def finish_turn(self) -> bool:
        """Close the turn when nothing is open in it; True when the run completed.

        A turn that reached a ``human_input`` block ends with the run waiting for the
        answer instead; the answer opens the next turn (``engine.turns``).
        """
        if self.opened or self.open_steps():
            return False
        ends = self.session.scalars(
            select(Step)
            .where(
                Step.run_id == self.run.id,
                Step.turn_index == self.run.current_turn,
                Step.scope == "",
                Step.block_type.in_(["end", "human_input"]),
                Step.state == StepState.COMPLETED,
            )
            .order_by(Step.created_at)
        ).all()
        output: dict[str, Any] = {}
        awaiting = [s for s in ends if s.block_type == "human_input" and s.reason == AWAITING]
        for s in ends:
            if s.block_type == "end":
                output.update(unwrap(s.outputs))
        if awaiting:
            first = awaiting[0]
            output["awaiting_input"] = {
                "block_id": first.block_id,
                "step_id": first.step_id,
                "prompt": unwrap(first.outputs).get("prompt"),
            }
        self.session.execute(
            update(Turn)
            .where(Turn.run_id == self.run.id, Turn.turn_index == self.run.current_turn)
            .values(output=output, completed_at=self.now)
        )
        target = RunStatus.WAITING if awaiting else RunStatus.COMPLETED
        values: dict[str, Any] = {"updated_at": self.now}
        if target == RunStatus.COMPLETED:
            values["completed_at"] = self.now
        moved = transition(
            self.session,
            RUN,
            Run,
            self.run.id,
            target,
            expect=[RunStatus.RUNNING] if awaiting else [RunStatus.STARTED, RunStatus.RUNNING],
            values=values,
        )
        if not moved:
            return False
        self.run.status = target
        if target != RunStatus.COMPLETED:
            return False
        from engine.evaluation import run_ended

        self.dispatchable.extend(run_ended(self.session, self.run, self.now))
        return True


@functools.lru_cache(maxsize=4)
def _insert_once(dialect: str) -> Any:
    table: Any = Step.__table__
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert_(table).on_conflict_do_nothing(index_elements=["run_id", "step_id"])


def _same_component(graph: Graph, a: str, b: str) -> bool:
    for comp in graph._sccs:
        if a in comp:
            return b in comp
    return False


def _resolved_from_row(row: dict[str, Any]) -> Resolved:
    return Resolved(
        id=row["id"],
        block_id=row["block_id"],
        scope=row["scope"],
        turn=row["turn_index"],
        visit=row["visit"],
        state=row["state"],
        active=(),
        outputs={},
    )


def _ms(start: datetime | None, end: datetime) -> int | None:
    from engine.clock import as_utc

    s = as_utc(start)
    return None if s is None else int((end - s).total_seconds() * 1000)
