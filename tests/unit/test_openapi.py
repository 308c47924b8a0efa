"""The OpenAPI document: well formed, complete, and true to what the views return.

No database: the document comes from the app's own ``/openapi.json``, and the views are
fed ORM rows built in memory, one per shape they can take (every lifecycle state, a run
of the draft, an execution answered as queued...). Each answer is validated against the
document's component schemas, ``date-time`` formats included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from retab.types.workflows.blocks.executions import (
    BlockExecFileHandleInput,
    StoredBlockExecution,
)

import api.views as views
from api.app import create_app
from api.openapi import PROBLEM_JSON
from engine.db.models import (
    BlockExecution,
    Comment,
    Run,
    Step,
    Turn,
    Workflow,
    WorkflowVersion,
)
from engine.pages import Page
from engine.runs import summarize_usage
from engine.settings import Settings
from engine.testing import QueueDispatcher

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    app = create_app(
        Settings(data_dir=str(data_dir), rate_limit_per_minute=0), dispatcher=QueueDispatcher()
    )
    yield app
    app.extensions["quorum"].close()


@pytest.fixture(scope="module")
def doc(app: Flask) -> dict[str, Any]:
    r = app.test_client().get("/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert isinstance(body, dict)
    return body


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert method in HTTP_METHODS, (path, method)
            yield path, method, op


# -- the document --------------------------------------------------------------------------


def test_every_registered_route_is_documented_and_nothing_else(
    app: Flask, doc: dict[str, Any]
) -> None:
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        routes |= {(path, m.lower()) for m in rule.methods or () if m not in {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, method, _ in _operations(doc)}
    assert routes and routes == documented


def test_the_document_is_well_formed_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    schemas = doc["components"]["schemas"]
    for name, schema in schemas.items():
        Draft202012Validator.check_schema(schema)  # each one is valid JSON Schema 2020-12
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name), name
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    operation_ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(operation_ids) == len(set(operation_ids))
    for path, _, op in _operations(doc):
        names = [p["name"] for p in op["parameters"] if p["in"] == "path"]
        assert sorted(names) == sorted(re.findall(r"{([a-z_]+)}", path)), path
        for p in op["parameters"]:
            assert p["in"] in {"path", "query", "header"}
            assert p["required"] is True or p["in"] != "path"
            Draft202012Validator.check_schema(p["schema"])
        for scheme in op.get("security", []):
            assert set(scheme) <= set(doc["components"]["securitySchemes"])


def test_every_operation_documents_its_answers(doc: dict[str, Any]) -> None:
    for path, method, op in _operations(doc):
        label = f"{method.upper()} {path}"
        responses = op["responses"]
        success = [code for code in responses if code.startswith("2")]
        assert len(success) == 1, label
        ok = responses[success[0]]
        assert ok["description"] and ok["content"], label
        errors = {int(code) for code in responses if not code.startswith("2")}
        for code in errors:
            answer = responses[str(code)]
            assert answer["content"] == {
                PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, (label, code)
        if path.startswith("/v1/"):
            assert op["security"] == [{"bearer": []}], label
            assert {401, 429, 503} <= errors, label
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
            assert responses["429"]["headers"]["Retry-After"]["required"] is True
            assert "RateLimit-Remaining" in ok["headers"], label
            (media,) = ok["content"]  # application/json, or text/event-stream (run events)
            ref = ok["content"][media]["schema"]["$ref"]
            assert ref.startswith("#/components/schemas/"), label
        else:
            assert "security" not in op and 401 not in errors, label
        if "{" in path:
            assert 404 in errors, label
        if "requestBody" in op:
            assert {400, 413, 415, 422} <= errors, label
        if method == "post" and path.startswith("/v1/"):
            header = [p for p in op["parameters"] if p["name"] == "Idempotency-Key"]
            assert header and header[0]["in"] == "header", label
            assert {409, 422} <= errors, label
            assert "Idempotent-Replayed" in ok["headers"], label


def test_lifecycle_is_a_union_tagged_by_status(doc: dict[str, Any]) -> None:
    lifecycle = doc["components"]["schemas"]["Lifecycle"]
    mapping = lifecycle["discriminator"]["mapping"]
    assert lifecycle["discriminator"]["propertyName"] == "status"
    states = {"pending", "queued", "running", "completed", "error", "cancelled", "skipped"}
    assert set(mapping) == states
    assert sorted(v["$ref"] for v in lifecycle["oneOf"]) == sorted(mapping.values())


# -- the views against it ------------------------------------------------------------------


@pytest.fixture(scope="module")
def validate(doc: dict[str, Any]) -> Any:
    formats = FormatChecker(formats=())

    @formats.checks("date-time")
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        # RFC 3339 in UTC with Z, as the contract says.
        return bool(RFC3339_Z.fullmatch(value)) and datetime.fromisoformat(value) is not None

    resource: Resource[Any] = Resource.from_contents(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", **doc}
    )
    registry: Registry[Any] = Registry().with_resource("urn:quorum:openapi", resource)

    def check(name: str, instance: Any) -> None:
        schema = {"$ref": f"urn:quorum:openapi#/components/schemas/{name}"}
        validator = Draft202012Validator(schema, registry=registry, format_checker=formats)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            raise ValidationError(
                "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
            )

    return check


GRAPH = {
    "blocks": [
        {"id": "start", "type": "start", "name": None, "config": {"inputs": {"x": {}}}},
        {"id": "end", "type": "end", "name": "End", "config": {}},
    ],
    "edges": [{"source": "start", "source_handle": "x", "target": "end", "target_handle": "x"}],
}
ID = "65a1b2c3d4e5f60718293a4b"
ID2 = "65a1b2c3d4e5f60718293a4c"


def _lifecycle_rows(model: type[Step] | type[BlockExecution]) -> list[dict[str, Any]]:
    later = T0 + timedelta(seconds=3)
    return [
        {"state": "pending"},
        {"state": "queued", "queued_at": T0},
        {"state": "queued"},  # queued_at missing: falls back to created_at
        {"state": "running", "queued_at": T0, "started_at": later, "worker": "w@h", "attempt": 1},
        {"state": "running", "worker": None, "attempt": None},
        {"state": "completed", "started_at": T0, "completed_at": later},
        {"state": "error", "error_type": "boom", "error_message": "it broke"},
        {"state": "error"},
        {"state": "cancelled", "reason": "requested"},
        {"state": "skipped", "reason": None},
    ]


def test_workflow_views_match_their_schemas(validate: Any) -> None:
    wf = Workflow(
        id=ID,
        organization_id=ID2,
        name="wf",
        description=None,
        draft=GRAPH,
        settings={},
        latest_version=1,
        created_at=T0,
        updated_at=T0,
    )
    versions = [
        WorkflowVersion(
            workflow_id=ID, number=n, name=name, graph=GRAPH, settings={}, created_at=T0
        )
        for n, name in ((0, None), (1, "first"))
    ]
    validate("Workflow", views.workflow(wf, versions))
    wf.settings = {"max_block_visits": 10, "stale_after_s": 30.5, "evaluation_workflow_id": ID2}
    wf.description = "described"
    validate("Workflow", views.workflow(wf, []))
    validate("WorkflowSummary", views.workflow_summary(wf))
    validate("Version", views.version(versions[1]))
    page = Page(items=[wf], has_more=True, before=ID2, after=ID)
    validate("WorkflowPage", views.page(page, views.workflow_summary))
    with pytest.raises(ValidationError):
        validate("Workflow", {**views.workflow(wf, []), "undocumented": 1})


def _run(**kw: Any) -> Run:
    values: dict[str, Any] = {
        "id": ID,
        "organization_id": ID2,
        "workflow_id": ID2,
        "version": 0,
        "version_name": None,
        "status": "running",
        "termination_reason": None,
        "config": {**GRAPH, "settings": {"max_block_visits": 10}},
        "metadata_": {"k": "v"},
        "initiator": None,
        "original_run_id": None,
        "parent_turn_index": None,
        "is_evaluation": False,
        "evaluation": None,
        "steps_total": 2,
        "steps_done": 1,
        "error": None,
        "created_at": T0,
        "updated_at": T0,
        "completed_at": None,
    }
    values.update(kw)
    return Run(**values)


@pytest.mark.parametrize(
    "row",
    [
        {},
        {"version": None, "version_name": "draft", "config": {**GRAPH, "settings": {}}},
        {
            "status": "failed",
            "termination_reason": "execution_error",
            "error": {"step_id": ID, "block_id": "end", "type": "boom", "message": "broke"},
            "completed_at": T0,
        },
        {
            "status": "completed",
            "completed_at": T0,
            "evaluation": {
                "run_id": ID2,
                "status": "completed",
                "termination_reason": None,
                "outputs": {"score": 1},
            },
        },
        {
            "status": "completed",
            "evaluation": {
                "run_id": None,
                "status": "not_started",
                "error": "no such workflow",
                "outputs": None,
            },
        },
        {"original_run_id": ID2, "parent_turn_index": 1, "is_evaluation": True, "metadata_": {}},
    ],
)
def test_run_views_match_their_schemas(validate: Any, row: dict[str, Any]) -> None:
    run = _run(**row)
    turns = [
        Turn(run_id=ID, turn_index=0, input={"x": 1}, output=None, started_at=T0),
        Turn(run_id=ID, turn_index=1, input=None, output=[1], started_at=T0, completed_at=T0),
    ]
    comments = [Comment(id=ID2, run_id=ID, author="me", text="hi", created_at=T0)]
    for rows in ([], [("local", "local-1", 2, 10, 5, 30), ("http", "gpt", 1, None, None, None)]):
        token_usage, latency_stats = summarize_usage(rows)
        out = views.run(
            run,
            turns=turns,
            comments=comments,
            token_usage=token_usage,
            latency_stats=latency_stats,
        )
        validate("Run", out)
    validate("RunSummary", views.run_summary(run))
    validate("RunPage", views.page(Page(items=[run], has_more=False), views.run_summary))
    validate("Comment", views.comment(comments[0]))


@pytest.mark.parametrize("lifecycle", _lifecycle_rows(Step), ids=lambda r: r["state"])
def test_step_views_match_their_schemas(validate: Any, lifecycle: dict[str, Any]) -> None:
    step = Step(
        id=ID,
        run_id=ID2,
        turn_index=0,
        step_id="pages[1]/f~2",
        scope="pages[1]",
        block_id="f",
        block_type="function",
        visit=2,
        inputs={"value": {"type": "json", "data": 1}},
        outputs=None,
        active_output_handles=None,
        duration_ms=None,
        n_consensus=1,
        consensus=None,
        created_at=T0,
        **{"started_at": None, "completed_at": None, **lifecycle},
    )
    validate("Step", views.step(step))
    step.scope, step.outputs, step.active_output_handles = "", {"output": 1}, ["output"]
    step.duration_ms, step.n_consensus, step.consensus = 12, 3, {"fields": {"a": 1.0}}
    validate("StepPage", views.page(Page(items=[step], has_more=False, before=ID), views.step))


@pytest.mark.parametrize("lifecycle", _lifecycle_rows(BlockExecution), ids=lambda r: r["state"])
def test_execution_views_match_their_schemas(validate: Any, lifecycle: dict[str, Any]) -> None:
    ex = BlockExecution(
        id=ID,
        organization_id=ID2,
        workflow_id=ID2,
        run_id=ID2,
        block_id="f",
        block_type="extract",
        workflow_version=None,
        step_id=None,
        available_iterations=None,
        block_config={"schema": {}},
        inputs={},
        outputs=None,
        artifact=None,
        active_output_handles=None,
        duration_ms=None,
        n_consensus=1,
        consensus=None,
        created_at=T0,
        **{"started_at": None, "completed_at": None, **lifecycle},
    )
    for answer in (views.execution(ex), views.execution_as_queued(ex)):
        validate("BlockExecution", answer)
        StoredBlockExecution.model_validate(answer)
    ex.workflow_version, ex.step_id = 3, "pages[0]/f"
    ex.available_iterations = [
        {"step_id": "pages[0]/f", "iteration": "pages[0]"},
        {"step_id": "pages[1]/f", "iteration": "pages[1]"},
    ]
    ex.inputs = {
        "document": {"type": "file", "name": "a.pdf", "text": "..."},
        "hint": {"type": "json", "data": [1]},
    }
    ex.outputs, ex.active_output_handles = {"output": {"type": "json", "data": {}}}, ["output"]
    ex.duration_ms, ex.n_consensus, ex.consensus = 0, 5, {"likelihoods": {}}
    answer = views.execution(ex)
    validate(
        "BlockExecutionPage", views.page(Page(items=[ex], has_more=True, after=ID), views.execution)
    )
    sdk = StoredBlockExecution.model_validate(answer)
    assert sdk.source_run_id == ID2 and sdk.workflow_version_id == "3"
    assert sdk.handle_inputs is not None
    document = sdk.handle_inputs["document"]
    assert isinstance(document, BlockExecFileHandleInput)
    assert document.document.filename == "a.pdf"
    assert document.document.mime_type == "application/pdf"
    assert answer["available_iterations"][1] == {"step_id": "pages[1]/f", "iteration": "pages[1]"}
    if lifecycle["state"] == "completed":
        assert sdk.artifact is not None and sdk.artifact.id == ID
        assert sdk.artifact.operation.value == "extraction"
    else:
        assert sdk.artifact is None


def test_problems_and_operations_answers_match_their_schemas(
    app: Flask, validate: Any, doc: dict[str, Any]
) -> None:
    client = app.test_client()
    r = client.get("/v1/workflows")
    assert r.status_code == 401 and r.mimetype == PROBLEM_JSON
    validate("Problem", r.get_json())
    r = client.post("/v1/workflows", json={}, headers={"Authorization": "Bearer nope"})
    validate("Problem", r.get_json())
    validate("Health", client.get("/healthz").get_json())
    validate("OpenApiDocument", doc)
    validate("Ready", {"status": "ok", "checks": {"database": "ok", "broker": "ok"}})
    validate(
        "Problem",
        {
            "type": "t",
            "title": "t",
            "status": 422,
            "detail": "d",
            "errors": [{"loc": ["body", 0], "msg": "m"}],
        },
    )


def test_the_checks_bite(validate: Any) -> None:
    good = {
        "id": ID,
        "author": "qk_0a1b2c3d4e5f",
        "display_name": None,
        "text": "hi",
        "created_at": "2026-01-02T03:04:05.678Z",
    }
    validate("Comment", good)
    for bad in (
        {**good, "created_at": "2026-01-02T03:04:05+00:00"},
        {**good, "created_at": None},
        {**good, "id": "X" * 24},
        {k: v for k, v in good.items() if k != "text"},
    ):
        with pytest.raises(ValidationError):
            validate("Comment", bad)
    for bad_lifecycle in (
        {"status": "queued"},
        {"status": "done"},
        {"state": "completed"},
        {"status": "skipped", "reason": None},
        {"status": "error", "error": {"type": "boom", "message": "it broke"}},
    ):
        with pytest.raises(ValidationError):
            validate("Lifecycle", bad_lifecycle)
