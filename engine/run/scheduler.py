"""Deciding what runs next, inside the transaction that holds the run's lock.

When a step ends, every block downstream of it is considered. An acyclic block is a
join: it is scheduled once, when every incoming edge is resolved, and runs if at least
one of them is active (else it is ``skipped`` and the skip propagates). A block on a
cycle (which always passes through a router) runs again each time an active edge
reaches it. ``for_each`` iterations run in their own scope ("pages[2]") and are
gathered through a counter on the for_each step (engine.run.foreach), never by a
blocking join. Closing a turn is engine.run.ended's.
"""

from __future__ import annotations

from typing import Any, Literal

from engine.blocks.registry import kind_of
from engine.execute import wrap
from engine.graph.model import Block, Edge
from engine.lifecycle import OPEN_STEP_STATES, StepState
from engine.run.foreach import ForEachSteps
from engine.run.paths import Resolved, resolved_from_row, split_scope
from engine.store.dialects import store_for


class Scheduler(ForEachSteps):
    def step_resolved(self, step: Resolved) -> None:
        """Schedule what ``step`` unblocks, then close its iteration if idle."""
        self._propagate(step)
        if step.scope:
            self._maybe_finish_iteration(step.scope)

    def _propagate(self, step: Resolved) -> None:
        edges = [
            e
            for e in self.graph.outgoing(step.block_id)
            if not (
                kind_of(self.graph.by_id[step.block_id].type).fans_out and e.source_handle == "item"
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
                skipped.append(resolved_from_row(row))
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
            or kind_of(self.graph.by_id[e.source].type).passes_inputs  # stores its inputs as given
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
            row = self._skipped_row(block, step.scope)
        done = self.session.execute(store_for(self.session).insert_step_once, row)
        if not getattr(done, "rowcount", 0):
            if self.claimed is row:
                self.claimed = None
            return None  # already scheduled in this turn: a join runs once
        self.add_steps([row], inserted=True)
        return row

    def _skipped_row(self, block: Block, scope: str) -> dict[str, Any]:
        return self.step_row(
            block,
            scope=scope,
            visit=1,
            inputs={},
            state=StepState.SKIPPED,
            reason="inactive_inputs",
        )

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
            row = self._skipped_row(block, scope)
        self.add_steps([row])
        return row

    def _is_item_edge(self, e: Edge, scope: str) -> bool:
        if not scope or e.source_handle != "item":
            return False
        _, fe, _ = split_scope(scope)
        return e.source == fe
