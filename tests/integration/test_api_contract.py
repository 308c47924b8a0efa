"""The HTTP contract over a real socket against real PostgreSQL (no workers needed).

Every error case of ``api-contract.md`` is sent as a client would send it and checked for
its status, an ``application/problem+json`` body (``type``, ``title``, ``status``,
``detail`` and, for validation, ``errors`` with ``loc``) and for leaving no row behind.
Then the happy paths of the Workflows API, ``Idempotency-Key``, and the operations routes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.serving import BaseWSGIServer, make_server

from api.app import create_app
from engine import idempotency
from engine.auth import issue_key, revoke_key
from engine.db.models import (
    ApiKey,
    IdempotencyRecord,
    Organization,
    Workflow,
    WorkflowVersion,
)
from engine.db.session import Database
from engine.settings import Settings

pytestmark = pytest.mark.integration

ID = re.compile(r"^[0-9a-f]{24}$")
MAX_BODY = 8192
PROBLEM = "application/problem+json"


# -- fixtures ----------------------------------------------------------------------------


@dataclass
class Server:
    app: Flask
    server: BaseWSGIServer
    thread: threading.Thread
    base_url: str

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.app.extensions["quorum"].close()


@contextmanager
def serving(settings: Settings) -> Iterator[Server]:
    app = create_app(settings)
    try:
        server = make_server("127.0.0.1", 0, app, threaded=True)
    except BaseException:
        app.extensions["quorum"].close()
        raise
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    srv = Server(
        app=app, server=server, thread=thread, base_url=f"http://127.0.0.1:{server.server_port}"
    )
    try:
        yield srv
    finally:
        srv.close()


@dataclass
class Env:
    """The served API and direct database access for the checks."""

    server: Server
    db: Database

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def new_key(self, org: str | None = None) -> str:
        with self.db.transaction() as s:
            return issue_key(s, org or f"org-{uuid.uuid4().hex[:12]}").key

    def org_id(self, key: str) -> str:
        prefix = "_".join(key.split("_")[:2])
        with self.db.transaction() as s:
            return s.scalars(select(ApiKey.organization_id).where(ApiKey.prefix == prefix)).one()

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def counts(self) -> dict[str, int]:
        with self.db.transaction() as s:
            return {
                m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0
                for m in (Organization, Workflow, WorkflowVersion, IdempotencyRecord)
            }

    def workflows_of(self, org_id: str) -> int:
        with self.db.transaction() as s:
            stmt = select(func.count()).where(Workflow.organization_id == org_id)
            return s.scalar(stmt.select_from(Workflow)) or 0

    @contextmanager
    def unchanged(self) -> Iterator[None]:
        before = self.counts()
        yield
        assert self.counts() == before, "a refused request wrote rows"


@pytest.fixture(scope="module")
def env(
    module_database: str, module_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    data_dir: Path = tmp_path_factory.mktemp("contract")
    settings = Settings(
        database_url=module_database,
        broker_url=module_broker,
        data_dir=str(data_dir),
        max_body_bytes=MAX_BODY,
    )
    db = Database(settings)
    try:
        with serving(settings) as server:
            yield Env(server=server, db=db)
    finally:
        db.close()


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No request may end in the API's 500 path (it logs the error it hides)."""
    yield
    errors = [r for r in caplog.records if r.name == "quorum.api" and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
def key(env: Env) -> str:
    return env.new_key()


@pytest.fixture
def client(env: Env, key: str) -> Iterator[httpx.Client]:
    with env.client(key) as c:
        yield c


@pytest.fixture
def other(env: Env) -> Iterator[httpx.Client]:
    """A client of a second organization."""
    with env.client(env.new_key()) as c:
        yield c


# -- helpers -----------------------------------------------------------------------------


def block(bid: str, btype: str, **config: Any) -> dict[str, Any]:
    return {"id": bid, "type": btype, "config": config}


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


def start(bid: str = "start", *handles: str) -> dict[str, Any]:
    return block(bid, "start", inputs={h: {"type": "json"} for h in (handles or ("doc",))})


def linear() -> dict[str, Any]:
    return {
        "blocks": [start(), block("f", "function", function="identity"), block("end", "end")],
        "edges": [edge("start", "doc", "f", "value"), edge("f", "output", "end", "result")],
    }


def workflow_body(name: str = "wf", **extra: Any) -> dict[str, Any]:
    return {"name": name, **linear(), **extra}


def assert_problem(
    r: httpx.Response, status: int, *, locs: list[list[Any]] | None = None
) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == PROBLEM, r.headers
    assert "Traceback" not in r.text and 'File "' not in r.text
    body = r.json()
    assert isinstance(body, dict)
    assert body["status"] == status
    for member in ("type", "title", "detail"):
        assert isinstance(body[member], str) and body[member], (member, body)
    if locs is not None:
        errors = body.get("errors")
        assert isinstance(errors, list) and errors, body
        for e in errors:
            assert isinstance(e["loc"], list) and e["loc"], e
            assert isinstance(e["msg"], str) and e["msg"], e
        found = [e["loc"] for e in errors]
        for loc in locs:
            assert loc in found, (loc, found)
    return dict(body)


def create(c: httpx.Client, name: str = "wf", **extra: Any) -> dict[str, Any]:
    r = c.post("/v1/workflows", json=workflow_body(name, **extra))
    assert r.status_code == 201, r.text
    return dict(r.json())


def post_raw(
    c: httpx.Client, path: str, content: bytes, ctype: str | None = "application/json"
) -> httpx.Response:
    headers = {"Content-Type": ctype} if ctype else {}
    return c.post(path, content=content, headers=headers)


# -- 400 / 413 / 415 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"not json",
        b'{"name": "wf",}',
        b"[1, 2",
        b'{"name": NaN, "blocks": []}',
        b'{"name": Infinity}',
        b"\xff\xfe\xfa",
        b'{"name": "\xff"}',
    ],
    ids=lambda raw: repr(raw)[:24],
)
def test_unparsable_json_is_400(env: Env, client: httpx.Client, raw: bytes) -> None:
    with env.unchanged():
        assert_problem(post_raw(client, "/v1/workflows", raw), 400)


def test_a_body_over_the_limit_is_413(env: Env, client: httpx.Client) -> None:
    wf = create(client)
    big = json.dumps(workflow_body(description="x" * (MAX_BODY + 10))).encode()
    with env.unchanged():
        body = assert_problem(post_raw(client, "/v1/workflows", big), 413)
        assert str(MAX_BODY) in body["detail"]
        # Without a Content-Length (chunked): the limit holds while reading.
        chunks = [big[i : i + 1024] for i in range(0, len(big), 1024)]
        r = client.post(
            "/v1/workflows", content=iter(chunks), headers={"Content-Type": "application/json"}
        )
        assert_problem(r, 413)
        # On every route with a body.
        r = client.put(
            f"/v1/workflows/{wf['id']}/draft",
            content=big,
            headers={"Content-Type": "application/json"},
        )
        assert_problem(r, 413)


@pytest.mark.parametrize(
    "ctype",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x", "a/b"],
)
def test_a_body_that_is_not_json_is_415(env: Env, client: httpx.Client, ctype: str | None) -> None:
    raw = json.dumps(workflow_body()).encode()
    with env.unchanged():
        assert_problem(post_raw(client, "/v1/workflows", raw, ctype), 415)


def test_json_media_types_are_accepted(env: Env, client: httpx.Client) -> None:
    raw = json.dumps(workflow_body()).encode()
    for ctype in ("application/json; charset=utf-8", "application/merge-patch+json"):
        assert post_raw(client, "/v1/workflows", raw, ctype).status_code == 201


# -- 422 ---------------------------------------------------------------------------------


def _cycle() -> dict[str, Any]:
    return {
        "blocks": [
            start(),
            block("a", "function", function="identity"),
            block("b", "function", function="identity"),
            block("end", "end"),
        ],
        "edges": [
            edge("start", "doc", "a", "value"),
            edge("a", "output", "b", "value"),
            edge("b", "output", "a", "again"),
            edge("b", "output", "end", "result"),
        ],
    }


def _router(when: str) -> dict[str, Any]:
    return {
        "blocks": [
            start(),
            block("r", "router", routes=[{"handle": "yes", "when": when}], default="no"),
            block("end", "end"),
        ],
        "edges": [
            edge("start", "doc", "r", "input"),
            edge("r", "yes", "end", "a"),
            edge("r", "no", "end", "b"),
        ],
    }


def _extract(n: Any) -> dict[str, Any]:
    return {
        "blocks": [
            start(),
            block("x", "extract", schema={"type": "object"}, n_consensus=n),
            block("end", "end"),
        ],
        "edges": [edge("start", "doc", "x", "document"), edge("x", "output", "end", "data")],
    }


def _with(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def apply(body: dict[str, Any]) -> None:
        body.update(changes)

    return apply


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"v": value}
    return value


INVALID: dict[str, tuple[dict[str, Any], list[list[Any]]]] = {
    "missing name": ({k: v for k, v in workflow_body().items() if k != "name"}, [["body", "name"]]),
    "empty name": (workflow_body(""), [["body", "name"]]),
    "name not a string": (workflow_body(name=5), [["body", "name"]]),  # type: ignore[arg-type]
    "missing blocks": ({"name": "wf"}, [["body", "blocks"]]),
    "blocks not a list": ({"name": "wf", "blocks": {}, "edges": []}, [["body", "blocks"]]),
    "unknown block type": (
        {
            "name": "wf",
            **linear(),
            "blocks": [start(), block("f", "teleport"), block("end", "end")],
        },
        [["body", "blocks", 1, "type"]],
    ),
    "block type not a string": (
        {"name": "wf", **linear(), "blocks": [start(), block("f", ["x"]), block("end", "end")]},  # type: ignore[arg-type]
        [["body", "blocks", 1, "type"]],
    ),
    "bad block id": (
        {"name": "wf", "blocks": [start("Start")], "edges": []},
        [["body", "blocks", 0, "id"]],
    ),
    "duplicate block id": (
        {
            "name": "wf",
            **linear(),
            "blocks": [*linear()["blocks"], block("f", "function", function="identity")],
        },
        [["body", "blocks", 3, "id"]],
    ),
    "edge to unknown block": (
        {
            "name": "wf",
            **linear(),
            "edges": [*linear()["edges"], edge("f", "output", "ghost", "x")],
        },
        [["body", "edges", 2, "target"]],
    ),
    "edge from unknown block": (
        {"name": "wf", **linear(), "edges": [*linear()["edges"], edge("ghost", "o", "end", "x")]},
        [["body", "edges", 2, "source"]],
    ),
    "unknown output handle": (
        {"name": "wf", **linear(), "edges": [edge("start", "nope", "f", "value")]},
        [["body", "edges", 0, "source_handle"]],
    ),
    "unknown input handle": (
        {
            "name": "wf",
            "blocks": [start(), block("h", "human_input"), block("end", "end")],
            "edges": [edge("start", "doc", "h", "question"), edge("h", "response", "end", "r")],
        },
        [["body", "edges", 0, "target_handle"]],
    ),
    "no start block": (
        {"name": "wf", "blocks": [block("end", "end")], "edges": []},
        [["body", "blocks"]],
    ),
    "cycle without router": ({"name": "wf", **_cycle()}, [["body", "edges", 1]]),
    "bad n_consensus": (
        {"name": "wf", **_extract(2)},
        [["body", "blocks", 1, "config", "n_consensus"]],
    ),
    "float n_consensus": (
        {"name": "wf", **_extract(3.0)},
        [["body", "blocks", 1, "config", "n_consensus"]],
    ),
    "bad router expression": (
        {"name": "wf", **_router("doc ===")},
        [["body", "blocks", 1, "config", "routes", 0, "when"]],
    ),
    "forbidden router expression": (
        {"name": "wf", **_router("__import__('os')")},
        [["body", "blocks", 1, "config", "routes", 0, "when"]],
    ),
    "start inputs not an object": (
        {
            "name": "wf",
            "blocks": [block("start", "start", inputs=5), block("end", "end")],
            "edges": [edge("start", "doc", "end", "x")],
        },
        [["body", "blocks", 0, "config", "inputs"]],
    ),
    "function outputs not a list": (
        {
            "name": "wf",
            **linear(),
            "blocks": [
                start(),
                block("f", "function", function="f", outputs=5),
                block("end", "end"),
            ],
        },
        [["body", "blocks", 1, "config", "outputs"]],
    ),
    "unreachable block": (
        {"name": "wf", **linear(), "blocks": [*linear()["blocks"], block("lost", "end")]},
        [["body", "blocks", 3]],
    ),
    "extra field": (workflow_body(colour="blue"), [["body", "colour"]]),
    "extra field in a block": (
        {
            "name": "wf",
            **linear(),
            "blocks": [{**start(), "colour": "blue"}, *linear()["blocks"][1:]],
        },
        [["body", "blocks", 0, "colour"]],
    ),
    "extra field in an edge": (
        {
            "name": "wf",
            **linear(),
            "edges": [{**linear()["edges"][0], "w": 1}, linear()["edges"][1]],
        },
        [["body", "edges", 0, "w"]],
    ),
    "extra field in settings": (
        workflow_body(settings={"max_block_visits": 5, "turbo": True}),
        [["body", "settings", "turbo"]],
    ),
    "bad setting": (
        workflow_body(settings={"max_block_visits": 0}),
        [["body", "settings", "max_block_visits"]],
    ),
    "unknown evaluation workflow": (
        workflow_body(settings={"evaluation_workflow_id": "0" * 24}),
        [["body", "settings", "evaluation_workflow_id"]],
    ),
    "JSON nested too deep": (
        workflow_body(description=None, settings=None) | {"blocks": [_nested(40)]},
        [["body"]],
    ),
    "NUL in a string": (workflow_body("a\x00b"), [["body", "name"]]),
    "NUL deep in config": (
        {
            "name": "wf",
            **linear(),
            "blocks": [
                start(),
                block("f", "function", function="f", params={"p": "\x00"}),
                block("end", "end"),
            ],
        },
        [["body", "blocks", 1, "config", "params", "p"]],
    ),
    "body not an object": ([workflow_body()], [["body"]]),  # type: ignore[dict-item]
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_workflows_are_422_naming_the_field(
    env: Env, client: httpx.Client, case: str
) -> None:
    body, locs = INVALID[case]
    with env.unchanged():
        r = client.post("/v1/workflows", json=body)
        problem = assert_problem(r, 422, locs=locs)
        assert problem["type"].endswith("validation-error")


@pytest.mark.parametrize(
    "raw, loc",
    [
        (b'{"name": "wf", "blocks": [], "x": 1e400}', ["body"]),
        (b'{"name": "wf", "blocks": [], "x": ' + b"9" * 5000 + b"}", ["body"]),
        (b'{"name": "\\u0000", "blocks": []}', ["body", "name"]),
        (b'{"name": "\\ud800", "blocks": []}', ["body", "name"]),
        (b'{"name": "wf", "blocks": [], "settings": {"\\ud800": 1}}', ["body", "settings"]),
        (b"[" * 3000 + b"]" * 3000, ["body"]),
        (b'{"a": ' * 100 + b"1" + b"}" * 100, ["body"]),
        (b"", ["body", "name"]),
    ],
    ids=["inf", "huge int", "nul", "surrogate", "surrogate key", "deep list", "deep", "empty"],
)
def test_unstorable_or_too_deep_json_is_422(
    env: Env, client: httpx.Client, raw: bytes, loc: list[Any]
) -> None:
    with env.unchanged():
        assert_problem(post_raw(client, "/v1/workflows", raw), 422, locs=[loc])


def test_invalid_draft_changes_are_422_and_leave_the_draft(env: Env, client: httpx.Client) -> None:
    wf = create(client)
    url = f"/v1/workflows/{wf['id']}"
    with env.unchanged():
        r = client.put(f"{url}/draft", json={"blocks": [block("end", "end")], "edges": []})
        assert_problem(r, 422, locs=[["body", "blocks"]])
        r = client.put(f"{url}/draft", json={**_cycle(), "name": "no names here"})
        assert_problem(r, 422, locs=[["body", "name"]])
        r = client.put(f"{url}/draft", json={**_router("1 +")})
        assert_problem(r, 422, locs=[["body", "blocks", 1, "config", "routes", 0, "when"]])
        r = client.put(
            f"{url}/draft", json={**linear(), "settings": {"evaluation_workflow_id": wf["id"]}}
        )
        assert_problem(r, 422, locs=[["body", "settings", "evaluation_workflow_id"]])
        # A patch that breaks the block's config names the body; one that breaks an edge
        # (the function's output handle goes away) names the draft's edge.
        r = client.patch(f"{url}/draft/blocks/f", json={"config": {"params": 5}})
        assert_problem(r, 422, locs=[["body", "config", "function"], ["body", "config", "params"]])
        r = client.patch(
            f"{url}/draft/blocks/f", json={"config": {"function": "identity", "outputs": ["o"]}}
        )
        assert_problem(r, 422, locs=[["draft", "edges", 1, "source_handle"]])
        r = client.patch(f"{url}/draft/blocks/f", json={"type": "end"})
        assert_problem(r, 422, locs=[["body", "type"]])
        r = client.patch(f"{url}/draft/blocks/f", json={"name": "x" * 201})
        assert_problem(r, 422, locs=[["body", "name"]])
    assert client.get(url).json()["draft"] == wf["draft"]


@pytest.mark.parametrize(
    "params, loc",
    [
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 201}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"after": "nope"}, ["query", "after"]),
        ({"before": "nope"}, ["query", "before"]),
        ({"order": "newest"}, ["query", "order"]),
        ({"after": "0" * 24, "before": "f" * 24}, ["query"]),
        ({"sort": "name"}, ["query", "sort"]),
        ([("limit", "1"), ("limit", "2")], ["query", "limit"]),
    ],
)
def test_bad_list_parameters_are_422(client: httpx.Client, params: Any, loc: list[Any]) -> None:
    assert_problem(client.get("/v1/workflows", params=params), 422, locs=[loc])


# -- 404 ---------------------------------------------------------------------------------

MISSING = "0123456789abcdef01234567"


def _routes_of(wid: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", f"/v1/workflows/{wid}", None),
        ("PUT", f"/v1/workflows/{wid}/draft", linear()),
        ("PATCH", f"/v1/workflows/{wid}/draft/blocks/f", {"name": "x"}),
        ("POST", f"/v1/workflows/{wid}/versions", {}),
        ("GET", f"/v1/workflows/{wid}/versions/0", None),
    ]


@pytest.mark.parametrize(
    "wid", [MISSING, "nope", MISSING.upper(), MISSING + "0", MISSING[:-1], "%00" + MISSING[3:]]
)
def test_unknown_or_malformed_workflow_ids_are_404(
    env: Env, client: httpx.Client, wid: str
) -> None:
    with env.unchanged():
        for method, path, body in _routes_of(wid):
            r = client.request(method, path, json=body)
            assert_problem(r, 404)


def test_unknown_versions_blocks_and_routes_are_404(env: Env, client: httpx.Client) -> None:
    wf = create(client)
    url = f"/v1/workflows/{wf['id']}"
    with env.unchanged():
        for path in (
            f"{url}/versions/1",
            f"{url}/versions/99999999999999999999",
            f"{url}/versions/-1",
            f"{url}/versions/one",
            "/v1/nothing",
            "/nothing",
            "/static/app.js",
            "/docs/assets/../../../../etc/passwd",
            "/docs/assets/js/missing.js",
        ):
            assert_problem(client.get(path), 404)
        for bid in ("ghost", "Bad-Id", "x" * 65):
            assert_problem(client.patch(f"{url}/draft/blocks/{bid}", json={"name": "n"}), 404)


def test_another_organizations_workflow_answers_exactly_like_a_missing_one(
    env: Env, client: httpx.Client, other: httpx.Client
) -> None:
    mine = create(client, "private")
    published = client.post(f"/v1/workflows/{mine['id']}/versions", json={"name": "v1"})
    assert published.status_code == 201
    with env.unchanged():
        for (method, path, body), (_, missing_path, _) in zip(
            _routes_of(mine["id"]), _routes_of(MISSING), strict=True
        ):
            theirs = other.request(method, path, json=body)
            absent = other.request(method, missing_path, json=body)
            assert_problem(theirs, 404)
            assert theirs.status_code == absent.status_code
            assert theirs.text.replace(mine["id"], MISSING) == absent.text
            strip = {"date", "content-length", "ratelimit-remaining", "ratelimit-reset"}
            assert {k: v for k, v in theirs.headers.items() if k not in strip} == {
                k: v for k, v in absent.headers.items() if k not in strip
            }
        r = other.get(f"/v1/workflows/{mine['id']}/versions/1")
        assert_problem(r, 404)
    # Lists never show it, whatever the page.
    listed = other.get("/v1/workflows", params={"limit": 200}).json()
    assert mine["id"] not in {w["id"] for w in listed["data"]}
    after = other.get("/v1/workflows", params={"after": "f" * 24, "limit": 200}).json()
    assert mine["id"] not in {w["id"] for w in after["data"]}
    # And it is intact.
    assert client.get(f"/v1/workflows/{mine['id']}").json()["draft"] == mine["draft"]
    # An organization cannot name another's workflow as its evaluation workflow either.
    r = other.post(
        "/v1/workflows", json=workflow_body(settings={"evaluation_workflow_id": mine["id"]})
    )
    assert_problem(r, 422, locs=[["body", "settings", "evaluation_workflow_id"]])


# -- 405 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("DELETE", "/v1/workflows", {"GET", "POST"}),
        ("PUT", "/v1/workflows", {"GET", "POST"}),
        ("DELETE", "/v1/workflows/{id}", {"GET"}),
        ("POST", "/v1/workflows/{id}", {"GET"}),
        ("GET", "/v1/workflows/{id}/draft", {"PUT"}),
        ("GET", "/v1/workflows/{id}/versions", {"POST"}),
        ("POST", "/healthz", {"GET"}),
    ],
)
def test_a_wrong_method_is_405_with_allow(
    env: Env, client: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    wf = create(client)
    with env.unchanged():
        r = client.request(method, path.replace("{id}", wf["id"]), json=workflow_body())
        assert_problem(r, 405)
        methods = {m.strip() for m in r.headers["Allow"].split(",")}
        assert allowed <= methods
        assert method not in methods


# -- 401 ---------------------------------------------------------------------------------


def test_missing_malformed_unknown_and_revoked_keys_are_401(env: Env) -> None:
    good = env.new_key()
    prefix, secret = "_".join(good.split("_")[:2]), good.split("_")[2]
    revoked = env.new_key()
    with env.db.transaction() as s:
        assert revoke_key(s, "_".join(revoked.split("_")[:2]))
    headers: list[dict[str, str]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {good}"},
        {"Authorization": good},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Bearer qk_0123456789ab_secret"},
        {"Authorization": f"Bearer {prefix}_{secret[:-1]}x"},
        {"Authorization": f"Bearer {prefix}_"},
        {"Authorization": f"Bearer {good}_extra"},
        {"Authorization": f"Bearer {good}" + "A" * 5000},
        {"Authorization": f"Bearer {revoked}"},
    ]
    with env.client() as anonymous, env.unchanged():
        for h in headers:
            for method, path, body in [
                ("GET", "/v1/workflows", None),
                ("POST", "/v1/workflows", workflow_body()),
                ("GET", f"/v1/workflows/{MISSING}", None),
                ("GET", "/v1/workflows/malformed", None),
                ("GET", "/v1/unknown", None),
                ("DELETE", "/v1/workflows", None),
            ]:
                r = anonymous.request(method, path, json=body, headers=h)
                assert_problem(r, 401)
                assert r.headers["WWW-Authenticate"].startswith("Bearer"), h
    with env.client(good) as c:
        assert c.get("/v1/workflows").status_code == 200
        assert (
            c.get("/v1/workflows", headers={"Authorization": f"bearer {good}"}).status_code == 200
        )


# -- 503 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def down(module_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/quorum",
        broker_url=module_broker,
        data_dir=str(tmp_path_factory.mktemp("down")),
    )
    with serving(settings) as server:
        yield server


def test_an_unreachable_database_is_503_quickly_never_500(env: Env, down: Server) -> None:
    key = env.new_key()  # well-formed: the API must look it up
    with httpx.Client(base_url=down.base_url, timeout=30) as c:
        auth = {"Authorization": f"Bearer {key}"}
        for method, path, body in [
            ("GET", "/v1/workflows", None),
            ("POST", "/v1/workflows", workflow_body()),
            ("GET", f"/v1/workflows/{MISSING}", None),
            ("PUT", f"/v1/workflows/{MISSING}/draft", linear()),
        ]:
            t0 = time.monotonic()
            r = c.request(method, path, json=body, headers=auth)
            assert time.monotonic() - t0 < 5
            problem = assert_problem(r, 503)
            assert "database" in problem["detail"]
            assert int(r.headers["Retry-After"]) > 0
        t0 = time.monotonic()
        ready = c.get("/readyz")
        assert time.monotonic() - t0 < 5
        assert_problem(ready, 503)
        assert ready.json()["checks"]["database"] != "ok"
        assert ready.json()["checks"]["broker"] == "ok"
        assert c.get("/healthz").status_code == 200
        assert c.get("/healthz").json() == {"status": "ok"}
        # What needs no database still works; a missing key is still 401.
        assert c.get("/openapi.json").status_code == 200
        assert_problem(c.get("/v1/workflows"), 401)
        metrics = c.get("/metrics").text
        assert 'status="503"' in metrics


# -- the Workflows API -------------------------------------------------------------------


def _is_time(value: Any) -> bool:
    return isinstance(value, str) and value.endswith("Z") and "T" in value


def test_create_read_replace_patch_publish(client: httpx.Client) -> None:
    graph = linear()
    r = client.post(
        "/v1/workflows",
        json={"name": "invoices", "description": "d", **graph, "settings": {"max_block_visits": 4}},
    )
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/json"
    wf = r.json()
    assert ID.match(wf["id"])
    assert wf["name"] == "invoices" and wf["description"] == "d"
    assert wf["settings"] == {"max_block_visits": 4}
    assert wf["latest_version"] == 0
    assert [v["number"] for v in wf["versions"]] == [0]
    assert all(_is_time(v["created_at"]) for v in wf["versions"])
    assert _is_time(wf["created_at"]) and _is_time(wf["updated_at"])
    assert [b["id"] for b in wf["draft"]["blocks"]] == ["start", "f", "end"]
    assert wf["draft"]["edges"] == graph["edges"]
    url = f"/v1/workflows/{wf['id']}"

    assert client.get(url).json() == wf

    # Replace the draft: a new block in the middle.
    new = {
        "blocks": [
            start(),
            block("f", "function", function="identity"),
            block("g", "function", function="identity", params={"k": 1}),
            block("end", "end"),
        ],
        "edges": [
            edge("start", "doc", "f", "value"),
            edge("f", "output", "g", "value"),
            edge("g", "output", "end", "result"),
        ],
    }
    r = client.put(f"{url}/draft", json=new)
    assert r.status_code == 200, r.text
    replaced = r.json()
    assert [b["id"] for b in replaced["draft"]["blocks"]] == ["start", "f", "g", "end"]
    assert replaced["settings"] == {"max_block_visits": 4}  # kept when not sent
    assert [v["number"] for v in replaced["versions"]] == [0]

    # Patch one block.
    r = client.patch(f"{url}/draft/blocks/g", json={"name": "G", "config": {"function": "upper"}})
    assert r.status_code == 200, r.text
    g = next(b for b in r.json()["draft"]["blocks"] if b["id"] == "g")
    assert g["name"] == "G" and g["config"] == {"function": "upper"}
    r = client.patch(f"{url}/draft/blocks/g", json={"name": "G2"})
    g = next(b for b in r.json()["draft"]["blocks"] if b["id"] == "g")
    assert g["name"] == "G2" and g["config"] == {"function": "upper"}
    draft = r.json()["draft"]

    # Publish: version 1 is the draft.
    r = client.post(f"{url}/versions", json={"name": "first"})
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert v1["number"] == 1 and v1["name"] == "first" and v1["workflow_id"] == wf["id"]
    assert v1["graph"] == draft and _is_time(v1["created_at"])
    assert client.get(f"{url}/versions/1").json() == v1
    v0 = client.get(f"{url}/versions/0").json()
    assert v0["number"] == 0 and v0["graph"] == wf["draft"]

    # Publishing needs no body at all.
    r = client.post(f"{url}/versions")
    assert r.status_code == 201, r.text
    assert r.json()["number"] == 2 and r.json()["name"] is None

    read = client.get(url).json()
    assert read["latest_version"] == 2
    assert [(v["number"], v["name"]) for v in read["versions"]] == [
        (0, None),
        (1, "first"),
        (2, None),
    ]
    # Later draft edits do not touch published versions.
    client.patch(f"{url}/draft/blocks/g", json={"config": {"function": "lower"}})
    assert client.get(f"{url}/versions/1").json()["graph"] == draft


EMPTY_PAGE = {
    "data": [],
    "has_more": False,
    "next_after": None,
    "list_metadata": {"before": None, "after": None},
}


def test_list_pagination_newest_first(env: Env) -> None:
    with env.client(env.new_key()) as c:
        assert c.get("/v1/workflows").json() == EMPTY_PAGE
        ids = [create(c, f"wf{i}")["id"] for i in range(5)]
        newest_first = ids[::-1]
        assert sorted(ids) == ids

        page = c.get("/v1/workflows").json()
        assert [w["id"] for w in page["data"]] == newest_first
        assert page["has_more"] is False and page["next_after"] is None
        assert page["list_metadata"] == {"before": None, "after": None}
        summary = page["data"][0]
        assert summary["name"] == "wf4" and _is_time(summary["created_at"])

        seen: list[str] = []
        after: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
            page = c.get("/v1/workflows", params=params).json()
            pages += 1
            seen.extend(w["id"] for w in page["data"])
            first_before = page["data"][0]["id"] if after else None
            assert page["list_metadata"]["before"] == first_before
            if not page["has_more"]:
                assert page["next_after"] is None and page["list_metadata"]["after"] is None
                break
            assert page["next_after"] == page["list_metadata"]["after"] == page["data"][-1]["id"]
            after = page["next_after"]
        assert seen == newest_first and pages == 3

        exact = c.get("/v1/workflows", params={"limit": 5}).json()
        assert exact["has_more"] is False and len(exact["data"]) == 5
        tail = c.get("/v1/workflows", params={"after": ids[0]}).json()
        assert tail == EMPTY_PAGE

        # Oldest first, and back from a cursor: the rows next to it, in list order.
        oldest = c.get("/v1/workflows", params={"order": "asc", "limit": 2}).json()
        assert [w["id"] for w in oldest["data"]] == ids[:2]
        assert oldest["list_metadata"] == {"before": None, "after": ids[1]}
        back = c.get("/v1/workflows", params={"before": ids[1], "limit": 2}).json()
        assert [w["id"] for w in back["data"]] == [ids[3], ids[2]]
        assert back["has_more"] is True
        assert back["list_metadata"] == {"before": ids[3], "after": ids[2]}
        for path in ("/v1/workflows/runs", "/v1/workflows/blocks/executions"):
            assert c.get(path, params={"order": "asc"}).json() == EMPTY_PAGE


# -- Idempotency-Key ---------------------------------------------------------------------


def test_a_repeated_post_with_the_same_key_returns_the_first_answer(
    env: Env, key: str, client: httpx.Client
) -> None:
    org = env.org_id(key)
    k = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    first = client.post("/v1/workflows", json=workflow_body("once"), headers=k)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    second = client.post("/v1/workflows", json=workflow_body("once"), headers=k)
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["content-type"] == "application/json"
    assert second.content == first.content
    assert env.workflows_of(org) == 1

    # Another key is another request.
    third = client.post(
        "/v1/workflows", json=workflow_body("once"), headers={"Idempotency-Key": "b"}
    )
    assert third.status_code == 201 and third.json()["id"] != first.json()["id"]
    assert env.workflows_of(org) == 2
    # Without a key nothing is remembered.
    assert client.post("/v1/workflows", json=workflow_body()).status_code == 201
    assert env.workflows_of(org) == 3

    # The same key in another organization is independent.
    other_key = env.new_key()
    with env.client(other_key) as other:
        theirs = other.post("/v1/workflows", json=workflow_body("once"), headers=k)
        assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
        assert theirs.json()["id"] != first.json()["id"]
        assert env.workflows_of(env.org_id(other_key)) == 1
    assert env.workflows_of(org) == 3

    # Publishing a version once.
    url = f"/v1/workflows/{first.json()['id']}/versions"
    pk = {"Idempotency-Key": "publish-1"}
    v1 = client.post(url, json={"name": "v"}, headers=pk)
    v1_again = client.post(url, json={"name": "v"}, headers=pk)
    assert v1.status_code == v1_again.status_code == 201
    assert v1.json()["number"] == v1_again.json()["number"] == 1
    assert client.get(url.rsplit("/", 1)[0]).json()["latest_version"] == 1


def test_idempotency_key_misuse(env: Env, key: str, client: httpx.Client) -> None:
    org = env.org_id(key)
    wf = create(client)
    k = {"Idempotency-Key": "used-for-create"}
    assert client.post("/v1/workflows", json=workflow_body(), headers=k).status_code == 201

    with env.unchanged():
        # The same key on another route.
        r = client.post(f"/v1/workflows/{wf['id']}/versions", json={}, headers=k)
        assert_problem(r, 422, locs=[["header", "Idempotency-Key"]])
        # Malformed keys.
        for bad in ("", "x" * 201):
            r = client.post("/v1/workflows", json=workflow_body(), headers={"Idempotency-Key": bad})
            assert_problem(r, 422, locs=[["header", "Idempotency-Key"]])
        r = client.post(
            "/v1/workflows",
            json=workflow_body(),
            headers=[("Idempotency-Key", "caf\xc3\xa9".encode("latin-1"))],
        )
        assert_problem(r, 422, locs=[["header", "Idempotency-Key"]])

    # A key whose first request is still in progress (its transaction open): 409, nothing
    # done; the moment that transaction ends, the key is free.
    busy = idempotency.guard(
        organization_id=org, key="busy", method="POST", path="/v1/workflows", body=b"{}"
    )
    before = env.workflows_of(org)
    with env.db.transaction() as s:
        idempotency.enter(s, busy)
        r = client.post("/v1/workflows", json=workflow_body(), headers={"Idempotency-Key": "busy"})
        assert_problem(r, 409)
        assert env.workflows_of(org) == before
    r = client.post("/v1/workflows", json=workflow_body(), headers={"Idempotency-Key": "busy"})
    assert r.status_code == 201 and env.workflows_of(org) == before + 1

    # A failed first request is not remembered: the key can be retried.
    retry = {"Idempotency-Key": "retry-me"}
    bad = client.post(
        "/v1/workflows", json={"name": "x", "blocks": [block("end", "end")]}, headers=retry
    )
    assert_problem(bad, 422)
    good = client.post("/v1/workflows", json=workflow_body(), headers=retry)
    assert good.status_code == 201 and "Idempotent-Replayed" not in good.headers
    assert client.post("/v1/workflows", json=workflow_body(), headers=retry).json() == good.json()
    # Not-found answers are not remembered either.
    nf = client.post(
        f"/v1/workflows/{MISSING}/versions", json={}, headers={"Idempotency-Key": "nf"}
    )
    assert_problem(nf, 404)
    with env.db.transaction() as s:
        assert s.get(IdempotencyRecord, (org, "nf")) is None
        assert s.get(IdempotencyRecord, (org, "retry-me")).status == 201  # type: ignore[union-attr]
    # GET ignores the header.
    g = client.get("/v1/workflows", headers={"Idempotency-Key": "used-for-create"})
    assert g.status_code == 200 and "Idempotent-Replayed" not in g.headers


def test_concurrent_repeats_create_one_workflow(env: Env, key: str) -> None:
    org = env.org_id(key)
    results: list[httpx.Response] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def send() -> None:
        with env.client(key) as c:
            barrier.wait()
            r = c.post("/v1/workflows", json=workflow_body(), headers={"Idempotency-Key": "race"})
            with lock:
                results.append(r)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8
    assert {r.status_code for r in results} <= {201, 409}
    ids = {r.json()["id"] for r in results if r.status_code == 201}
    assert len(ids) == 1
    for r in results:
        if r.status_code == 409:
            assert_problem(r, 409)
    assert env.workflows_of(org) == 1


# -- operations --------------------------------------------------------------------------


def test_openapi_lists_every_route(env: Env) -> None:
    with env.client() as c:
        r = c.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    routes = set()
    for rule in env.server.app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in {"HEAD", "OPTIONS"}:
                routes.add((path, method.lower()))
    documented = {(p, m) for p, item in doc["paths"].items() for m in item}
    assert routes, "no routes found"
    assert routes == documented
    create_op = doc["paths"]["/v1/workflows"]["post"]
    assert "201" in create_op["responses"] and "422" in create_op["responses"]
    assert any(p["name"] == "Idempotency-Key" for p in create_op["parameters"])
    version = doc["paths"]["/v1/workflows/{workflow_id}/versions/{number}"]["get"]
    number = next(p for p in version["parameters"] if p["name"] == "number")
    assert number["schema"]["type"] == "integer"
    schemas = doc["components"]["schemas"]
    assert {"CreateWorkflow", "Problem"} <= set(schemas)


def test_docs_are_served_without_the_network(env: Env) -> None:
    with env.client() as c:
        r = c.get("/docs")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        html = r.text
        refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
        assert refs, html
        external = re.findall(r"https?://[^\s\"'<>)]+", html)
        assert not [u for u in external if not u.startswith(env.base_url)], external
        assert "validatorUrl: null" in html
        for ref in refs:
            assert ref.startswith("/"), ref
            asset = c.get(ref)
            assert asset.status_code == 200, ref
            assert len(asset.content) > 1000
            kind = "text/css" if ref.endswith(".css") else "javascript"
            assert kind in asset.headers["content-type"], (ref, asset.headers["content-type"])
        assert "/openapi.json" in html


def test_metrics_are_prometheus_text(env: Env, client: httpx.Client) -> None:
    client.get("/v1/workflows")
    client.get("/v1/workflows/nope")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "# TYPE quorum_http_requests_total counter" in text
    assert re.search(
        r'quorum_http_requests_total\{method="GET",route="/v1/workflows",status="200"\} \d', text
    )
    assert 'route="/v1/workflows/<workflow_id>",status="404"' in text
    assert "quorum_http_request_seconds_bucket" in text


def test_health_and_readiness(env: Env) -> None:
    with env.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
