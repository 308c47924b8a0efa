"""Schemathesis fuzzes every operation of the app's own ``/openapi.json``.

The app is served on a real socket (a werkzeug server thread) against real PostgreSQL and
Redis; no workers. Every call carries a real API key. Each operation gets generated
requests, valid and invalid (bodies, path and query parameters, the ``Idempotency-Key``
header) plus schemathesis' boundary cases, and every answer must:

* never be a 5xx;
* have a status code the document lists for the operation;
* come in a media type the document lists for that status;
* have a body that conforms to the documented schema (the closed response models of
  ``api.resources``: an undocumented field fails too; each event of an SSE stream), and
  the documented headers;
* be a 401 when the same request comes without the key or with a wrong one (``/v1``), and
  a 405 for a method the route does not have.

A workflow and two runs (one live, one ended) are seeded, and the generated ids, block ids
and asset names are sometimes swapped for real ones (and bodies for valid ones), so that
requests reach real objects and not only the 404 and 422 paths. Generation is
derandomized: a failure reproduces run after run. ``QUORUM_FUZZ_EXAMPLES`` raises the
number of generated requests per operation for a deeper local run.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from werkzeug.serving import make_server

from api.app import create_app
from api.routes import feed, ops, ui
from engine.auth import issue_key
from engine.db.session import Database
from engine.settings import Settings

pytestmark = pytest.mark.integration

# Per operation (the fuzzing phase; the coverage phase adds its own boundary cases).
MAX_EXAMPLES = int(os.environ.get("QUORUM_FUZZ_EXAMPLES", "15"))
BLOCK_IDS = ["start", "ask", "end"]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# Files the static routes really serve, for their ``name`` (every one must be documented).
ASSETS = {
    "GET /docs/assets/{name}": _files(ops.SWAGGER_DIR),
    "GET /ui/assets/{name}": _files(ui.UI_DIR),
}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.ignored_auth,
    schemathesis.checks.unsupported_method,
]
WORKFLOW = {
    "name": "fuzz target",
    "blocks": [
        {"id": "start", "type": "start", "config": {"inputs": {"doc": {"type": "json"}}}},
        {"id": "ask", "type": "human_input", "config": {}},
        {"id": "end", "type": "end", "config": {}},
    ],
    "edges": [
        {"source": "start", "source_handle": "doc", "target": "ask", "target_handle": "prompt"},
        {"source": "ask", "source_handle": "response", "target": "end", "target_handle": "answer"},
    ],
}


class _NoDispatch:
    def dispatch(self, work: Any) -> None:
        raise AssertionError("the document needs no broker")

    def revoke(self, work: Any) -> None:
        raise AssertionError("the document needs no broker")


def served_document() -> dict[str, Any]:
    """``/openapi.json`` as the app serves it, fetched at collection time (no database:
    the document needs none), so that schemathesis can make one test per operation."""
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(
            Settings(data_dir=data_dir, rate_limit_per_minute=0), dispatcher=_NoDispatch()
        )
        try:
            r = app.test_client().get("/openapi.json")
        finally:
            app.extensions["quorum"].close()
    assert r.status_code == 200, r.get_data(True)
    doc: dict[str, Any] = r.get_json()
    return doc


class Seeded:
    """Real objects of the fuzzing organization that generated values may be swapped for."""

    def __init__(self, key: str, workflow_id: str, run_id: str, ended_run_id: str) -> None:
        self.key = key
        self.ids = {"workflow_id": workflow_id, "run_id": run_id}
        # The event stream of a live run stays open (no workers move it on): the stream
        # of an ended run replays its events and ends.
        self.ended_run_id = ended_run_id

    def realistic(self, values: Any, label: str) -> st.SearchStrategy[Any]:
        """``values`` as generated, or made to name real objects (and be valid bodies)."""
        if not isinstance(values, dict):
            return st.just(values)
        real: dict[str, Any] = {**values, **{k: v for k, v in self.ids.items() if k in values}}
        if label.endswith("/events") and "run_id" in values:
            real["run_id"] = self.ended_run_id
        if "number" in values:
            real["number"] = 0
        if "block_id" in values:
            real["block_id"] = BLOCK_IDS[len(str(values["block_id"])) % len(BLOCK_IDS)]
        if label in ASSETS and "name" in values:
            real["name"] = ASSETS[label][len(str(values["name"])) % len(ASSETS[label])]
        if label == "POST /v1/workflows/runs":
            real["inputs"] = {"doc": values.get("inputs")}
        elif label == "POST /v1/workflows":
            real.update(WORKFLOW)
        elif label == "PUT /v1/workflows/{workflow_id}/draft":
            real.update(blocks=WORKFLOW["blocks"], edges=WORKFLOW["edges"])
        if real == values:
            return st.just(values)
        return st.sampled_from([values, real])


# The schema is loaded when the module is collected (schemathesis makes one test per
# operation from it); the app, the key and the seeded ids come from the fixtures below.
DOCUMENT = served_document()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            # The key is sent with every call (see the test), never a generated one.
            "generation": {
                "mode": "all",
                "deterministic": True,
                "with-security-parameters": False,
            },
            # One operation at a time, no chains of calls: bounded and reproducible.
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)
_current: dict[str, Seeded] = {}


def _realistic(context: Any, values: Any) -> st.SearchStrategy[Any]:
    seeded = _current.get("seeded")
    if seeded is None or context.operation is None:
        return st.just(values)
    return seeded.realistic(values, context.operation.label)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: Any) -> st.SearchStrategy[Any]:
    return _realistic(context, path_parameters)


@schema.hook
def flatmap_query(context: Any, query: Any) -> st.SearchStrategy[Any]:
    return _realistic(context, query)


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    return _realistic(context, body)


@pytest.fixture(scope="module")
def app(
    module_database: str, module_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    settings_ = Settings(
        database_url=module_database,
        broker_url=module_broker,
        data_dir=str(data_dir),
        queue=f"quorum-fuzz-{uuid.uuid4().hex[:8]}",
        # Thousands of requests from one key in a minute: the limiter would soon answer
        # only 429s (documented, but then nothing else would be exercised).
        rate_limit_per_minute=0,
    )
    app = create_app(settings_)
    # The organization's run feed stays open for MAX_STREAM_S (an hour): end it within
    # seconds here, so that each fuzzed call reads a whole answer.
    saved, feed.MAX_STREAM_S = feed.MAX_STREAM_S, 2.0
    yield app
    feed.MAX_STREAM_S = saved
    app.extensions["quorum"].close()


@pytest.fixture(scope="module")
def base_url(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def seeded(app: Flask) -> Iterator[Seeded]:
    db: Database = app.extensions["quorum"].db
    with db.transaction() as s:
        key = issue_key(s, f"org-fuzz-{uuid.uuid4().hex[:8]}").key
    client = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    wf = client.post("/v1/workflows", json=WORKFLOW, headers=auth)
    assert wf.status_code == 201, wf.get_data(True)
    workflow_id = wf.get_json()["id"]
    runs = []
    for _ in range(2):
        run = client.post(
            "/v1/workflows/runs",
            json={"workflow_id": workflow_id, "inputs": {"doc": {"a": 1}}, "version": 0},
            headers=auth,
        )
        assert run.status_code == 202, run.get_data(True)
        runs.append(run.get_json()["id"])
    ended = client.post(f"/v1/workflows/runs/{runs[1]}/cancel", headers=auth)
    assert ended.status_code == 200 and ended.get_json()["status"] == "cancelled", ended.get_json()
    _current["seeded"] = Seeded(key, workflow_id, runs[0], runs[1])
    yield _current["seeded"]
    _current.clear()


def test_the_fuzzed_document_is_the_one_the_app_serves(app: Flask) -> None:
    served = app.test_client().get("/openapi.json")
    assert served.status_code == 200
    assert served.get_json() == DOCUMENT


@pytest.mark.parametrize("label", sorted(ASSETS))
def test_every_static_file_is_served_as_documented(app: Flask, label: str) -> None:
    """Each file the asset routes serve, in a media type their operation documents (the
    fuzzer swaps in real file names too, but may not draw every one)."""
    method, path = label.split(" ")
    documented = set(DOCUMENT["paths"][path][method.lower()]["responses"]["200"]["content"])
    client = app.test_client()
    for name in ASSETS[label]:
        with client.get(path.replace("{name}", name)) as r:
            assert r.status_code == 200, name
            assert r.mimetype in documented, (name, r.mimetype, documented)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # Slow data generation is expected on this small machine with large body schemas.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, base_url: str, seeded: Seeded
) -> None:
    auth = {"Authorization": f"Bearer {seeded.key}"}
    case.call_and_validate(base_url=base_url, headers=auth, checks=CHECKS, timeout=60)
