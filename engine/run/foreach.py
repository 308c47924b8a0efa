"""for_each iterations: started in one bulk insert, gathered through a counter.

Each iteration runs in its own scope ("pages[2]"); the for_each step's ``open_children``
counts the iterations still open, and the last one to finish completes the for_each.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from engine.db.models import Step
from engine.events import record_steps
from engine.execute import unwrap, wrap
from engine.lifecycle import STEP, StepState, transition
from engine.run.paths import Resolved, elapsed_ms, split_scope
from engine.run.scope import RunSteps


class ForEachSteps(RunSteps):
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
        outputs = {"results": self._gather(fe_step)}
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
                "duration_ms": elapsed_ms(fe_step.started_at, self.now),
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
