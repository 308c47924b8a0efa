"""Running a claimed block, with no transaction open (it may take minutes)."""

from __future__ import annotations

from engine.blocks.registry import kind_of
from engine.execute import BlockFailed, Outcome, Toolbox
from engine.limits import check_fan_out, measured
from engine.settings import Settings
from engine.worker.context import AwaitInput, FanOut, FanOutConsensus, Job, Result


def perform(job: Job, tools: Toolbox, settings: Settings) -> Result:
    block = job.block
    kind = kind_of(block.type)
    try:
        if kind.fans_out:
            items = job.inputs.get("items")
            if not isinstance(items, list):
                raise BlockFailed("bad_items", "a for_each needs a list on its 'items' input")
            check_fan_out(items, block.config.get("body") or [], settings)
            return FanOut(items=items)
        if kind.awaits_input:
            return AwaitInput(prompt=job.inputs.get("prompt"))
        if kind.calls_model and job.n_consensus > 1:
            return FanOutConsensus(n=job.n_consensus)
        outcome = kind.execute(block, job.inputs, tools)
        if kind.passes_inputs:
            outcome = Outcome(outputs=outcome.outputs, active=outcome.active)
        return measured(outcome, job.inputs, settings)
    except BlockFailed as failure:
        return failure
