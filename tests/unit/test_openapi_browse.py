"""The reads the browser UI adds, in /openapi.json and answered as documented (embedded DB)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from api.app import create_app
from engine.auth import issue_key
from engine.db.models import Base
from engine.settings import Settings
from engine.testing import QueueDispatcher


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    data_dir: Path = tmp_path_factory.mktemp("browse")
    app = create_app(
        Settings(data_dir=str(data_dir), rate_limit_per_minute=0), dispatcher=QueueDispatcher()
    )
    Base.metadata.create_all(app.extensions["quorum"].db.engine)
    yield app
    app.extensions["quorum"].close()


@pytest.fixture(scope="module")
def doc(app: Flask) -> dict[str, Any]:
    body = app.test_client().get("/openapi.json").get_json()
    assert isinstance(body, dict)
    return body


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    with app.extensions["quorum"].db.transaction() as s:
        key = issue_key(s, "browse").key
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return c


def _params(doc: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in doc["paths"][path]["get"]["parameters"]}


def _check(doc: dict[str, Any], name: str, instance: Any) -> None:
    resource: Resource[Any] = Resource.from_contents(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", **doc}
    )
    registry: Registry[Any] = Registry().with_resource("urn:doc", resource)
    schema = {"$ref": f"urn:doc#/components/schemas/{name}"}
    errors = list(Draft202012Validator(schema, registry=registry).iter_errors(instance))
    assert not errors, [e.message for e in errors]


def test_the_run_list_filters_are_documented(doc: dict[str, Any]) -> None:
    params = _params(doc, "/v1/workflows/runs")
    for name in ("created_from", "created_to"):
        schema = params[name]["schema"]
        assert {"type": "string", "format": "date-time"} in schema["anyOf"], schema
        assert params[name]["in"] == "query" and not params[name]["required"]
    assert {"type": "string", "pattern": "^[0-9a-f]{1,24}$"} in params["id_prefix"]["schema"][
        "anyOf"
    ]
    assert "workflow_id" in _params(doc, "/v1/workflows/blocks/executions")


def test_the_feed_and_the_diff_are_documented(doc: dict[str, Any]) -> None:
    feed = doc["paths"]["/v1/workflows/runs/events"]["get"]
    assert set(feed["responses"]["200"]["content"]) == {"text/event-stream"}
    assert {"after"} <= {p["name"] for p in feed["parameters"]}
    assert {"401", "422", "429"} <= set(feed["responses"])
    diff = doc["paths"]["/v1/workflows/{workflow_id}/draft/diff"]["get"]
    ref = diff["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/GraphDiff"
    assert "404" in diff["responses"]
    step = doc["components"]["schemas"]["Step"]
    assert {"queued_at", "worker"} <= set(step["required"])
    assert "error" in doc["components"]["schemas"]["RunSummary"]["required"]


def test_the_diff_answers_as_documented(doc: dict[str, Any], client: FlaskClient) -> None:
    graph = {
        "name": "wf",
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
            {"id": "f", "type": "function", "config": {"function": "identity"}},
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"source": "start", "source_handle": "x", "target": "f", "target_handle": "value"},
            {"source": "f", "source_handle": "output", "target": "end", "target_handle": "out"},
        ],
    }
    r = client.post("/v1/workflows", json=graph)
    assert r.status_code == 201, r.get_json()
    wf = r.get_json()
    r = client.patch(
        f"/v1/workflows/{wf['id']}/draft/blocks/f", json={"config": {"function": "noop"}}
    )
    assert r.status_code == 200, r.get_json()
    r = client.get(f"/v1/workflows/{wf['id']}/draft/diff?version=0")
    assert r.status_code == 200
    body = r.get_json()
    _check(doc, "GraphDiff", body)
    assert body["blocks"]["changed"] == ["f"] and body["identical"] is False
    with pytest.raises(AssertionError):
        _check(doc, "GraphDiff", {**body, "extra": 1})
