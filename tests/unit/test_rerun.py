"""engine.rerun: what a block execution reads of its run and of the current draft."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from engine.db.models import Workflow
from engine.errors import NotFound
from engine.graph.model import Graph
from engine.rerun import load_source, ran_steps
from tests.support.harness import Harness, linear_graph


def _draft_calling(h: Harness, wf: str, function: str) -> dict[str, Any]:
    with h.db.transaction() as s:
        draft: dict[str, Any] = copy.deepcopy(
            s.scalars(select(Workflow.draft).where(Workflow.id == wf)).one()
        )
    for b in draft["blocks"]:
        if b["id"] == "f":
            b["config"]["function"] = function
    return draft


def _function_of(graph: Graph) -> Any:
    return graph.by_id["f"].config["function"]


def test_a_second_read_is_not_sent_the_draft_it_already_parsed(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 5}, publish=False)
    with h.db.transaction() as s:
        first = load_source(s, h.org_id, run_id)
    assert _function_of(first.draft) == "double"
    # The stored JSON changes behind the same updated_at: only a read that skipped the
    # draft's JSON (the statement answers NULL for a draft already parsed) keeps the graph.
    with h.db.transaction() as s:
        s.execute(
            update(Workflow)
            .where(Workflow.id == wf)
            .values(draft=_draft_calling(h, wf, "inc"), updated_at=first.workflow_updated_at)
        )
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        sent.append((statement, parameters))

    event.listen(h.db.engine, "before_cursor_execute", record)
    try:
        with h.db.transaction() as s:
            again = load_source(s, h.org_id, run_id)
    finally:
        event.remove(h.db.engine, "before_cursor_execute", record)
    assert again.draft is first.draft and again.run_graph is first.run_graph
    (statement, parameters), *_ = [(q, p) for q, p in sent if "workflows" in q]
    with h.db.engine.connect() as conn:
        row = conn.exec_driver_sql(statement, parameters).mappings().one()
    assert row["draft"] is None  # what the read was sent back: no draft JSON
    # A changed draft moves updated_at: then it is read and parsed again.
    with h.db.transaction() as s:
        s.execute(
            update(Workflow)
            .where(Workflow.id == wf)
            .values(updated_at=first.workflow_updated_at + timedelta(seconds=1))
        )
    with h.db.transaction() as s:
        changed = load_source(s, h.org_id, run_id)
    assert _function_of(changed.draft) == "inc"


def test_the_tenant_is_checked_on_every_read(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 5}, publish=False)
    with h.db.transaction() as s:
        load_source(s, h.org_id, run_id)  # cached now
    with h.db.transaction() as s, pytest.raises(NotFound):
        load_source(s, "another-org", run_id)


def test_a_known_run_brings_the_block_steps_it_would_read_apart(h: Harness) -> None:
    wf = h.workflow(*linear_graph())
    run_id = h.start(wf, {"doc": 5})
    h.drain()
    with h.db.transaction() as s:
        first = load_source(s, h.org_id, run_id, block_id="f")
    assert first.ran is None  # not known yet: read the usual way
    for step_id in (None, "f", "nope"):
        with h.db.transaction() as s:
            src = load_source(s, h.org_id, run_id, block_id="f", step_id=step_id)
            apart = ran_steps(s, run_id, "f", step_id)
        assert src.ran is not None and list(src.ran) == apart
        assert [st.inputs is not None for st in apart] == [step_id != "nope"]
    assert src.draft is first.draft
    with h.db.transaction() as s:
        none_ran = load_source(s, h.org_id, run_id, block_id="missing")
    assert none_ran.ran == ()
    with h.db.transaction() as s, pytest.raises(NotFound):
        load_source(s, "another-org", run_id, block_id="f")
