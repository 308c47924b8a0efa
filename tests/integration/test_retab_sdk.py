"""The seed system's own SDK (``retab`` 0.0.160, unchanged) against a running Quorum.

``Retab(api_key=KEY, base_url=URL).workflows.blocks.executions.create/list`` send what that
SDK always sends (``check_eligibility``, ``order=desc``, ``limit=20``) and validate every
answer in the SDK's own pydantic models: ``create`` through ``StoredBlockExecution``, every
page of ``list`` through ``PaginatedList`` (paged with ``list_metadata.after``). Refusals
arrive as the SDK's typed exceptions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import truststore
from retab import Retab
from retab.exceptions import ConflictError, NotFoundError, ValidationError
from retab.types.pagination import PaginatedList
from retab.types.workflows.blocks.executions import (
    BlockExecFileHandleInput,
    BlockExecJsonHandleInput,
    CompletedBlockExecutionLifecycle,
    ErrorBlockExecutionLifecycle,
    StepArtifactRefOperation,
    StoredBlockExecution,
)

from tests.support.fleet import Api, Fleet

pytestmark = pytest.mark.integration

TERMINAL = {"completed", "error", "cancelled", "skipped"}


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


def start(**inputs: str) -> dict[str, Any]:
    kinds = {k: {"type": v} for k, v in inputs.items()}
    return {"id": "start", "type": "start", "config": {"inputs": kinds}}


def fn(block_id: str, function: str) -> dict[str, Any]:
    return {"id": block_id, "type": "function", "config": {"function": function}}


END = {"id": "end", "type": "end"}
INVOICE = {
    "type": "object",
    "properties": {"invoice_number": {"type": "string"}, "total": {"type": "number"}},
    "required": ["invoice_number", "total"],
}


@pytest.fixture
def sdk(fleet: Fleet, api: Api) -> Iterator[Retab]:
    key = api.http.headers["Authorization"].removeprefix("Bearer ")
    client = Retab(api_key=key, base_url=fleet.base_url, timeout=30, max_retries=0)
    try:
        yield client
    finally:
        client.client.close()
        # The SDK swaps the ssl module's default context for the system trust store.
        truststore.extract_from_ssl()


def completed_run(api: Api, graph: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    wf = api.create_workflow(graph)
    run = api.wait_run(api.start_run(wf["id"], inputs)["id"])
    assert run["status"] == "completed", run
    return run


def until_terminal(sdk: Retab, run_id: str, block_id: str, ex_id: str) -> StoredBlockExecution:
    """List (as the SDK pages it) until the execution is terminal."""
    deadline = time.monotonic() + 60
    while True:
        page = sdk.workflows.blocks.executions.list(run_id=run_id, block_id=block_id)
        assert isinstance(page, PaginatedList)
        found = [ex for ex in page if ex.id == ex_id]
        assert len(found) == 1, [ex.id for ex in page]
        ex = found[0]
        assert isinstance(ex, StoredBlockExecution)
        if ex.lifecycle.status in TERMINAL:
            return ex
        assert time.monotonic() < deadline, f"execution {ex_id} still {ex.lifecycle}"
        time.sleep(0.1)


def json_data(handles: Any, handle: str) -> Any:
    value = handles[handle]
    assert isinstance(value, BlockExecJsonHandleInput), value
    return value.data


def test_a_function_block_through_the_sdk(api: Api, sdk: Retab) -> None:
    graph = {
        "blocks": [start(x="json"), fn("calc", "double"), END],
        "edges": [edge("start", "x", "calc", "value"), edge("calc", "output", "end", "out")],
    }
    run = completed_run(api, graph, {"x": 21})
    executions = sdk.workflows.blocks.executions
    created = executions.create(run_id=run["id"], block_id="calc")
    assert isinstance(created, StoredBlockExecution)
    assert created.lifecycle.status in ("pending", "queued")
    assert (created.source_run_id, created.workflow_id) == (run["id"], run["workflow_id"])
    assert (created.block_id, created.block_type) == ("calc", "function")
    assert created.source_step_id == "calc" and created.workflow_version_id == "0"
    assert created.handle_outputs is None and created.artifact is None

    done = until_terminal(sdk, run["id"], "calc", created.id)
    assert isinstance(done.lifecycle, CompletedBlockExecutionLifecycle)
    assert json_data(done.handle_inputs, "value") == 21
    assert json_data(done.handle_outputs, "output") == 42
    assert done.routing_decisions == ["output"]
    assert done.artifact is not None
    assert done.artifact.operation == StepArtifactRefOperation.FUNCTION_INVOCATION
    assert done.artifact.id == done.id
    assert done.block_config == {"function": "double"}
    assert done.duration_ms is not None and done.completed_at is not None

    # A failing block: an error lifecycle with the executor's message.
    api.http.patch(
        f"/v1/workflows/{run['workflow_id']}/draft/blocks/calc",
        json={"config": {"function": "explode"}},
    ).raise_for_status()
    failed = until_terminal(
        sdk, run["id"], "calc", executions.create(run_id=run["id"], block_id="calc").id
    )
    assert isinstance(failed.lifecycle, ErrorBlockExecutionLifecycle)
    assert failed.lifecycle.message == "exploded on purpose"
    assert failed.handle_outputs is None and failed.artifact is None

    # The SDK's refusals: an unknown run, a block the run's draft does not have.
    with pytest.raises(NotFoundError):
        executions.create(run_id="0" * 24, block_id="calc")
    with pytest.raises(NotFoundError):
        executions.create(run_id=run["id"], block_id="ghost")


def test_one_for_each_iteration_and_the_refusals(api: Api, sdk: Retab) -> None:
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
    run = completed_run(api, graph, {"items": [5, 6, 7]})
    executions = sdk.workflows.blocks.executions

    # Several iterations and no step_id: 422, as the SDK raises it.
    with pytest.raises(ValidationError) as several:
        executions.create(run_id=run["id"], block_id="double")
    assert several.value.status_code == 422 and "step_id" in several.value.message
    with pytest.raises(ValidationError):
        executions.create(run_id=run["id"], block_id="double", step_id="pages[9]/double")
    with pytest.raises(ValidationError):
        executions.create(run_id=run["id"], block_id="double", n_consensus=3)

    created = executions.create(run_id=run["id"], block_id="double", step_id="pages[1]/double")
    assert created.source_step_id == "pages[1]/double"
    assert created.available_iterations == [
        {"step_id": f"pages[{i}]/double", "iteration": f"pages[{i}]"} for i in range(3)
    ]
    done = until_terminal(sdk, run["id"], "double", created.id)
    assert json_data(done.handle_outputs, "output") == 12

    # Drift upstream of the block: 409 unless eligibility is not checked.
    api.http.patch(
        f"/v1/workflows/{run['workflow_id']}/draft/blocks/pages",
        json={"config": {"body": ["double"], "collect": "double"}},
    ).raise_for_status()
    with pytest.raises(ConflictError) as drift:
        executions.create(run_id=run["id"], block_id="double", step_id="pages[0]/double")
    assert drift.value.status_code == 409 and "check_eligibility" in drift.value.message
    forced = executions.create(
        run_id=run["id"], block_id="double", step_id="pages[0]/double", check_eligibility=False
    )
    assert json_data(until_terminal(sdk, run["id"], "double", forced.id).handle_outputs, "output")
    assert json_data(forced.handle_inputs, "value") == 5


def test_an_extract_block_with_consensus_and_paging_by_one(api: Api, sdk: Retab) -> None:
    graph = {
        "blocks": [
            start(doc="json"),
            {"id": "invoice", "type": "extract", "config": {"schema": INVOICE}},
            END,
        ],
        "edges": [
            edge("start", "doc", "invoice", "document"),
            edge("invoice", "output", "end", "d"),
        ],
    }
    run = completed_run(api, graph, {"doc": "invoice_number: INV-7\ntotal: 1234.50\n"})
    executions = sdk.workflows.blocks.executions
    with pytest.raises(ValidationError):
        executions.create(run_id=run["id"], block_id="invoice", n_consensus=4)

    ids = []
    for _ in range(3):
        created = executions.create(run_id=run["id"], block_id="invoice", n_consensus=3)
        ids.append(created.id)
    for ex_id in ids:
        done = until_terminal(sdk, run["id"], "invoice", ex_id)
        assert isinstance(done.lifecycle, CompletedBlockExecutionLifecycle), done.lifecycle
        assert json_data(done.handle_outputs, "output") == {
            "invoice_number": "INV-7",
            "total": 1234.5,
        }
        assert done.artifact is not None
        assert done.artifact.operation == StepArtifactRefOperation.EXTRACTION
        assert done.block_config == {"schema": INVOICE, "n_consensus": 3}
        raw = api.get(f"/v1/workflows/blocks/executions/{ex_id}").json()
        assert raw["n_consensus"] == 3 and raw["consensus"]["attempts"] == 3

    # One at a time, as the SDK pages: list_metadata.after until it is null.
    first = executions.list(run_id=run["id"], block_id="invoice", limit=1)
    assert len(first) == 1 and first.list_metadata.after == first.data[0].id
    assert first.list_metadata.before is None
    assert [ex.id for ex in first] == ids[::-1]  # auto-paging, newest first
    oldest = executions.list(run_id=run["id"], block_id="invoice", limit=1, order="asc")
    assert [ex.id for ex in oldest] == ids
    back = executions.list(run_id=run["id"], block_id="invoice", limit=5, before=ids[0])
    assert [ex.id for ex in back.data] == ids[:0:-1] and back.list_metadata.after == ids[1]
    other = executions.list(run_id=run["id"], block_id="nothing", limit=1)
    assert other.data == [] and other.list_metadata.after is None


def test_a_file_handle_validates_as_the_sdks_file_input(api: Api, sdk: Retab) -> None:
    graph = {
        "blocks": [start(scan="file"), END],
        "edges": [edge("start", "scan", "end", "scan")],
    }
    scan = {"name": "scan.pdf", "id": f"file_{uuid.uuid4().hex[:8]}", "pages": 2}
    run = completed_run(api, graph, {"scan": scan})
    done = until_terminal(
        sdk,
        run["id"],
        "start",
        sdk.workflows.blocks.executions.create(run_id=run["id"], block_id="start").id,
    )
    assert done.handle_inputs is not None
    handle = done.handle_inputs["scan"]
    assert isinstance(handle, BlockExecFileHandleInput)
    assert (handle.document.id, handle.document.filename) == (scan["id"], "scan.pdf")
    assert handle.document.mime_type == "application/pdf"
