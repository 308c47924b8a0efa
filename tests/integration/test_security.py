"""Security over real sockets, PostgreSQL, Redis and worker processes.

- Tenancy: every route that names an id answers another organization exactly as it answers
  a missing id (status, body modulo the id, headers), lists never show another
  organization's objects, and the foreign calls change nothing.
- API keys are never stored or logged in the clear: not by the in-process API (every log
  record at DEBUG, SQL included), not by the production server (gunicorn's access and
  error log), not by the workers, not in any column of any table, not in Redis.
- ``quorum keys revoke`` makes a key answer 401 at once.
- Rate limiting per key on Redis shared by two API instances; Redis down fails open.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, MetaData, create_engine, func, select
from sqlalchemy.pool import NullPool
from werkzeug.serving import make_server

import engine.workflows
from api.app import create_app
from engine.db.models import ApiKey
from engine.settings import Settings
from tests.support.fleet import ROOT, Api, Fleet, Worker

pytestmark = pytest.mark.integration

MISSING = "0123456789abcdef01234567"
PROBLEM = "application/problem+json"
EXECUTIONS = "/v1/workflows/blocks/executions"
# Headers that may differ between two answers for reasons other than the resource.
VOLATILE = {"date", "content-length", "ratelimit-remaining", "ratelimit-reset"}


# -- graphs ----------------------------------------------------------------------------------


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


def start(*handles: str) -> dict[str, Any]:
    return {
        "id": "start",
        "type": "start",
        "config": {"inputs": {h: {"type": "json"} for h in handles}},
    }


def fn(block_id: str, function: str, **params: Any) -> dict[str, Any]:
    return {"id": block_id, "type": "function", "config": {"function": function, "params": params}}


END = {"id": "end", "type": "end"}
ASK = {
    "blocks": [start("doc"), {"id": "ask", "type": "human_input"}, END],
    "edges": [edge("start", "doc", "ask", "prompt"), edge("ask", "response", "end", "answer")],
}
DOUBLE = {
    "blocks": [start("x"), fn("d", "double"), END],
    "edges": [edge("start", "x", "d", "value"), edge("d", "output", "end", "y")],
}
SLOW = {
    "blocks": [start("x"), fn("s", "slow", seconds=1.5), fn("d", "double"), END],
    "edges": [
        edge("start", "x", "s", "value"),
        edge("s", "output", "d", "value"),
        edge("d", "output", "end", "y"),
    ],
}
FAILING = {
    "blocks": [start("x"), fn("boom", "explode", message="failing on purpose"), END],
    "edges": [edge("start", "x", "boom", "value"), edge("boom", "output", "end", "y")],
}


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def db(fleet: Fleet) -> Iterator[Engine]:
    engine = create_engine(fleet.env["QUORUM_DATABASE_URL"], poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def other(fleet: Fleet) -> Iterator[Api]:
    """A client of a second organization."""
    client = Api(fleet.base_url, fleet.new_key(f"other-{uuid.uuid4().hex[:8]}"))
    yield client
    client.close()


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == PROBLEM, r.headers
    body = dict(r.json())
    assert body["status"] == status
    assert all(isinstance(body[m], str) and body[m] for m in ("type", "title", "detail"))
    return body


def ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return dict(r.json())


def wait_for(what: str, done: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def table_counts(db: Engine) -> dict[str, int]:
    meta = MetaData()
    meta.reflect(db)
    with db.connect() as conn:
        return {
            t.name: int(conn.scalar(select(func.count()).select_from(t)) or 0)
            for t in meta.sorted_tables
        }


def dump_database(db: Engine) -> str:
    """Every column of every row of every table, as text."""
    meta = MetaData()
    meta.reflect(db)
    lines: list[str] = []
    with db.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                lines.append(f"{table.name}: {json.dumps(list(row), default=repr)}")
    return "\n".join(lines)


def dump_redis(url: str) -> str:
    """Every key and value of the Redis database (the broker's queues included)."""
    client = redis.Redis.from_url(url)
    out: list[str] = []
    try:
        for name in client.scan_iter(count=1000):
            raw: Any = client.type(name)
            kind = raw.decode() if isinstance(raw, bytes) else str(raw)
            value: Any
            if kind == "string":
                value = client.get(name)
            elif kind == "list":
                value = client.lrange(name, 0, -1)
            elif kind == "hash":
                value = client.hgetall(name)
            elif kind == "set":
                value = client.smembers(name)
            elif kind == "zset":
                value = client.zrange(name, 0, -1, withscores=True)
            else:
                value = kind
            out.append(f"{name!r}: {value!r}")
    finally:
        client.close()
    return "\n".join(out)


def prefix_of(key: str) -> str:
    return "_".join(key.split("_")[:2])


def secret_of(key: str) -> str:
    return key.split("_", 2)[2]


def quorum_cli(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quorum.cli", *args],
        cwd=ROOT,
        env=fleet.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def new_cli_key(fleet: Fleet, org: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    done = quorum_cli(fleet, "keys", "create", "--org", org)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("qk_") and len(key.split("_")) == 3, done.stdout
    return key, done


def gunicorn(fleet: Fleet, extra_env: dict[str, str] | None = None) -> tuple[Worker, str]:
    """``quorum api`` (gunicorn with api/gunicorn_conf.py) in its own process."""
    port = free_port()
    w = fleet.start_api_process(port, extra_env)
    base = f"http://127.0.0.1:{port}"
    wait_for("gunicorn to answer", lambda: _answers(base), timeout=30)
    return w, base


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def flushed(w: Worker, base: str) -> str:
    """Everything the process wrote, once its access line for a marker request is out."""
    marker = uuid.uuid4().hex[:24]
    httpx.get(f"{base}/v1/workflows/{marker}", timeout=10)
    wait_for("the access log line", lambda: any(marker in line for line in list(w.lines)))
    return "".join(w.lines)


# -- tenancy ---------------------------------------------------------------------------------


def _same_as_missing(
    client: Api, method: str, path: str, body: Any, owned_id: str, label: str
) -> None:
    """``path``/``body`` name ``owned_id``, another organization's object: 404 like a miss."""
    theirs = client.http.request(method, path, json=body)
    missing_body = json.loads(json.dumps(body).replace(owned_id, MISSING)) if body else body
    absent = client.http.request(method, path.replace(owned_id, MISSING), json=missing_body)
    assert_problem(theirs, 404)
    assert absent.status_code == 404, (label, absent.text)
    assert theirs.text.replace(owned_id, MISSING) == absent.text, label
    strip = {k: v for k, v in theirs.headers.items() if k.lower() not in VOLATILE}
    assert strip == {k: v for k, v in absent.headers.items() if k.lower() not in VOLATILE}, label


def _owner_view(api: Api, workflows: list[str], runs: list[str], executions: list[str]) -> Any:
    """Everything the owner can read about its objects (compared before and after)."""
    view: dict[str, Any] = {}
    for wid in workflows:
        wf = ok(api.get(f"/v1/workflows/{wid}"))
        view[wid] = wf
        for v in wf["versions"]:
            view[f"{wid}/v{v['number']}"] = ok(
                api.get(f"/v1/workflows/{wid}/versions/{v['number']}")
            )
    for rid in runs:
        view[rid] = ok(api.get(f"/v1/workflows/runs/{rid}"))
        view[f"{rid}/steps"] = api.steps(rid)
    for eid in executions:
        view[eid] = ok(api.get(f"{EXECUTIONS}/{eid}"))
    view["workflows"] = ok(api.get("/v1/workflows", params={"limit": 200}))
    view["runs"] = ok(api.get("/v1/workflows/runs", params={"limit": 200}))
    view["executions"] = ok(api.get(EXECUTIONS, params={"limit": 200}))
    return view


def _settled(api: Api, run_id: str) -> Callable[[], bool]:
    """True once no step of the run is running and its steps read the same twice in a row
    (a paused run keeps its queued steps queued until it is resumed)."""
    last: list[Any] = [None]

    def check() -> bool:
        steps = api.steps(run_id)
        same = steps == last[0]
        last[0] = steps
        return same and all(s["lifecycle"]["status"] != "running" for s in steps)

    return check


def test_another_organization_gets_404_exactly_like_a_missing_id_and_changes_nothing(
    fleet: Fleet, api: Api, other: Api, db: Engine
) -> None:
    # The owner's objects, each in a state where the owner's own call would do something.
    asking = api.create_workflow(ASK, "asking")
    ok(api.post(f"/v1/workflows/{asking['id']}/versions", {"name": "v1"}), 201)
    waiting = api.wait_run(
        api.start_run(asking["id"], {"doc": "a question"})["id"],
        until=lambda r: r["status"] == "waiting_for_user_input",
    )
    double = api.create_workflow(DOUBLE, "double")
    done = api.wait_run(api.start_run(double["id"], {"x": 21})["id"])
    assert done["status"] == "completed", done
    ok(api.post(f"/v1/workflows/runs/{done['id']}/comments", {"text": "mine"}), 201)
    child = api.wait_run(
        ok(api.post(f"/v1/workflows/runs/{done['id']}/checkpoint", {"resume_turn_index": 0}), 202)[
            "id"
        ]
    )
    execution = api.wait_execution(
        ok(api.post(EXECUTIONS, {"run_id": done["id"], "block_id": "d"}), 202)["id"]
    )
    slow = api.create_workflow(SLOW, "slow")
    paused_id = api.start_run(slow["id"], {"x": 1})["id"]
    paused = ok(api.post(f"/v1/workflows/runs/{paused_id}/pause"))
    assert paused["status"] == "paused"
    wait_for("the paused run to settle", _settled(api, paused_id))
    # The other organization has objects of its own, so its lists are not empty by chance.
    theirs_wf = other.create_workflow(DOUBLE, "theirs")
    theirs_run = other.wait_run(other.start_run(theirs_wf["id"], {"x": 1})["id"])

    workflows = [asking["id"], double["id"], slow["id"]]
    runs = [waiting["id"], done["id"], child["id"], paused_id]
    before = _owner_view(api, workflows, runs, [execution["id"]])
    counts = table_counts(db)

    wid = asking["id"]
    calls: list[tuple[str, str, Any, str]] = [
        ("GET", f"/v1/workflows/{wid}", None, wid),
        ("PUT", f"/v1/workflows/{wid}/draft", DOUBLE, wid),
        ("PATCH", f"/v1/workflows/{wid}/draft/blocks/ask", {"name": "mine now"}, wid),
        ("POST", f"/v1/workflows/{wid}/versions", {"name": "v2"}, wid),
        ("GET", f"/v1/workflows/{wid}/versions/0", None, wid),
        ("GET", f"/v1/workflows/{wid}/versions/1", None, wid),
        ("GET", f"/v1/workflows/{wid}/draft/diff", None, wid),
        ("POST", "/v1/workflows/runs", {"workflow_id": wid, "inputs": {"doc": "x"}}, wid),
        ("POST", "/v1/workflows/runs", {"workflow_id": wid, "version": "draft"}, wid),
    ]
    for rid in runs:
        url = f"/v1/workflows/runs/{rid}"
        calls += [
            ("GET", url, None, rid),
            ("GET", f"{url}/steps", None, rid),
            ("POST", f"{url}/input", {"input": "an answer"}, rid),
            ("POST", f"{url}/pause", None, rid),
            ("POST", f"{url}/resume", None, rid),
            ("POST", f"{url}/cancel", None, rid),
            ("POST", f"{url}/comments", {"text": "theirs"}, rid),
            ("POST", f"{url}/checkpoint", {"resume_turn_index": 0}, rid),
            ("GET", f"{url}/events", None, rid),
            ("POST", EXECUTIONS, {"run_id": rid, "block_id": "d"}, rid),
            ("POST", EXECUTIONS, {"run_id": rid, "block_id": "d", "n_consensus": 3}, rid),
        ]
    eid = execution["id"]
    calls += [
        ("GET", f"{EXECUTIONS}/{eid}", None, eid),
        ("POST", f"{EXECUTIONS}/{eid}/cancel", None, eid),
    ]
    # Every route that names an id (in its path or its body) is in the list.
    assert fleet.app is not None
    adapter = fleet.app.url_map.bind("localhost")
    covered = {adapter.match(path, method=method)[0] for method, path, _, _ in calls}
    naming_ids = {
        rule.endpoint
        for rule in fleet.app.url_map.iter_rules()
        if rule.rule.startswith("/v1/") and any(a.endswith("_id") for a in rule.arguments)
    } | {"runs.create_run", "executions.create_execution"}
    assert naming_ids <= covered, naming_ids - covered
    for method, path, body, owned in calls:
        _same_as_missing(other, method, path, body, owned, f"{method} {path} {body}")
    # With an Idempotency-Key the foreign POSTs are still refused (and nothing is stored).
    for rid in runs:
        r = other.post(f"/v1/workflows/runs/{rid}/cancel", headers={"Idempotency-Key": f"k-{rid}"})
        assert_problem(r, 404)

    # Lists never show the owner's objects, whatever the filter or cursor.
    def ids(path: str, **params: Any) -> set[str]:
        page = ok(other.get(path, params={"limit": 200, **params}))
        return {item["id"] for item in page["data"]}

    mine = set(workflows) | set(runs) | {eid}
    assert ids("/v1/workflows") == {theirs_wf["id"]}
    assert ids("/v1/workflows", after="f" * 24) == {theirs_wf["id"]}
    assert ids("/v1/workflows", after=double["id"]) & mine == set()
    assert ids("/v1/workflows/runs") == {theirs_run["id"]}
    for wf_id in workflows:
        assert ids("/v1/workflows/runs", workflow_id=wf_id) == set()
    assert ids("/v1/workflows/runs", original_run_id=done["id"]) == set()
    for status in ("waiting_for_user_input", "paused", "completed"):
        assert ids("/v1/workflows/runs", status=status) & mine == set()
    assert ids("/v1/workflows/runs", after=paused_id) & mine == set()
    assert ids(EXECUTIONS) == set()
    assert ids(EXECUTIONS, run_id=done["id"]) == set()
    assert ids(EXECUTIONS, run_id=done["id"], block_id="d") == set()
    assert ids(EXECUTIONS, block_id="d") == set()
    assert ids(EXECUTIONS, workflow_id=double["id"]) == set()
    for rid in runs:
        assert ids("/v1/workflows/runs", id_prefix=rid) == set()
    assert ids("/v1/workflows/runs", created_from="2000-01-01T00:00:00Z") == {theirs_run["id"]}

    # Nothing changed: not a row anywhere, not a field of the owner's objects.
    assert table_counts(db) == counts
    assert _owner_view(api, workflows, runs, [execution["id"]]) == before

    # The same filters do find them for the owner (so the empty answers above mean something).
    def own(path: str, **params: Any) -> set[str]:
        return {item["id"] for item in ok(api.get(path, params=params))["data"]}

    assert own("/v1/workflows/runs", workflow_id=wid) == {waiting["id"]}
    assert own("/v1/workflows/runs", original_run_id=done["id"]) == {child["id"]}
    assert own(EXECUTIONS, run_id=done["id"]) == {eid}
    assert own(EXECUTIONS, workflow_id=double["id"]) == {eid}
    assert own("/v1/workflows/runs", id_prefix=done["id"]) == {done["id"]}
    assert theirs_run["id"] not in own("/v1/workflows/runs")
    # And what the foreign calls could not do, the owner still can.
    ok(api.post(f"/v1/workflows/runs/{waiting['id']}/input", {"input": "yes"}), 202)
    answered = api.wait_run(waiting["id"])
    assert answered["status"] == "completed", answered
    ok(api.post(f"/v1/workflows/runs/{paused_id}/resume"))
    resumed = api.wait_run(paused_id)
    assert resumed["status"] == "completed" and resumed["io_pairs"][0]["output"] == {"y": 2}


# -- API keys in the clear -------------------------------------------------------------------

# The test's own HTTP client logs the URLs it calls; it is not the API.
CLIENT_LOGGERS = ("httpx", "httpcore")


def _api_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Every record the in-process API (and everything in this process but the test's HTTP
    client) logged: message, arguments, extra fields and traceback."""
    handler_format = logging.Formatter("%(name)s %(levelname)s %(message)s")
    parts: list[str] = []
    for record in caplog.records:
        if record.name.startswith(CLIENT_LOGGERS):
            continue
        parts.append(handler_format.format(record))
        parts.append(repr(record.__dict__))
    return "\n".join(parts)


def _exercise(base: str, key: str, revoked: str, *, query_string: bool) -> None:
    """Good and bad keys, keys where they do not belong, and a run that fails in a worker."""
    good = {"Authorization": f"Bearer {key}"}
    prefix, secret = prefix_of(key), secret_of(key)
    wrong: list[dict[str, Any]] = [
        {"Authorization": f"Bearer {prefix}_{secret[:-2]}xy"},  # right prefix, wrong secret
        {"Authorization": f"Bearer {key}x"},
        {"Authorization": f"Bearer qk_{'0' * 12}_{secret}"},  # unknown prefix
        {"Authorization": f"Bearer {revoked}"},
        {"Authorization": key},  # no scheme
        {"Authorization": f"Token {key}"},
        {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()},  # curl -u
        {"Authorization": f"Bearer {key}\u00e9".encode("latin-1")},
        {"X-Api-Key": key},
    ]
    with httpx.Client(base_url=base, timeout=30) as c:
        assert c.get("/v1/workflows", headers=good).status_code == 200
        assert c.get("/v1/workflows", headers={"Authorization": f"bearer {key}"}).status_code == 200
        for headers in wrong:
            r = c.get("/v1/workflows", headers=headers)
            assert_problem(r, 401)
            assert secret not in r.text
        wf = ok(c.post("/v1/workflows", json={"name": "failing", **FAILING}, headers=good), 201)
        # The key pasted into a body by mistake: refused, not stored, not echoed.
        for body in (
            {"name": "wf", **DOUBLE, "api_key": key},
            {"name": "wf", **DOUBLE, "settings": {"token": key}},
        ):
            r = c.post("/v1/workflows", json=body, headers=good)
            assert_problem(r, 422)
            assert secret not in r.text
        r = c.post("/v1/workflows", json={"name": "wf", **DOUBLE, "key": key})
        assert_problem(r, 401)
        r = c.post("/v1/workflows/runs", json={"workflow_id": wf["id"], "key": key}, headers=good)
        assert_problem(r, 422)
        if query_string:
            # ...or into the query string.
            for name in ("api_key", "access_token", "key"):
                r = c.get("/v1/workflows", params={name: key}, headers=good)
                assert_problem(r, 422)
                assert secret not in r.text
                assert_problem(c.get("/v1/workflows", params={name: key}), 401)
        # A run whose block fails: the workers log the error.
        r = c.post(
            "/v1/workflows/runs", json={"workflow_id": wf["id"], "inputs": {"x": 1}}, headers=good
        )
        run_url = f"/v1/workflows/runs/{ok(r, 202)['id']}"

        def ended() -> dict[str, Any] | None:
            run = ok(c.get(run_url, headers=good))
            return run if run["status"] in {"failed", "completed"} else None

        final = wait_for("the failing run", ended)
        assert final["status"] == "failed", final


def test_api_keys_are_never_stored_or_logged_in_the_clear(
    fleet: Fleet, db: Engine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy keeps its own loggers at WARNING unless told: every statement, its
    # parameters and its result rows too.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    org = f"secrets-{uuid.uuid4().hex[:8]}"
    key, created = new_cli_key(fleet, org)
    revoked, _ = new_cli_key(fleet, org)
    in_memory = fleet.new_key(org)  # issued in this process (its logs are captured)
    keys = [key, revoked, in_memory]
    # The CLI prints the key once, alone on the last line of stdout, and nothing else has it.
    assert created.stdout.count(key) == 1 and secret_of(key) not in created.stderr
    assert prefix_of(key) in created.stderr
    revoke = quorum_cli(fleet, "keys", "revoke", prefix_of(revoked))
    assert revoke.returncode == 0, revoke.stderr
    assert secret_of(revoked) not in revoke.stdout + revoke.stderr

    prod, prod_url = gunicorn(fleet)
    # The production server with its database down: every request fails (and is logged).
    down, down_url = gunicorn(
        fleet, {"QUORUM_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/quorum"}
    )

    # The in-process API is served by werkzeug's development server, whose own request log
    # (test harness only, never production) prints the query string: keys in a query
    # string go to gunicorn, the production server, whose whole output is checked.
    _exercise(fleet.base_url, key, revoked, query_string=False)
    _exercise(fleet.base_url, in_memory, revoked, query_string=False)
    _exercise(prod_url, key, revoked, query_string=True)
    with httpx.Client(base_url=down_url, timeout=30) as c:
        for k in keys:
            r = c.get("/v1/workflows", headers={"Authorization": f"Bearer {k}"})
            assert_problem(r, 503)
            r = c.get("/v1/workflows", params={"api_key": k})
            assert r.status_code in (401, 503), r.text

    # A request that fails inside the in-process API and logs an error with its traceback.
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the listing broke")

    monkeypatch.setattr(engine.workflows, "list_workflows", broken)
    with httpx.Client(base_url=fleet.base_url, timeout=30) as c:
        r = c.get("/v1/workflows", headers={"Authorization": f"Bearer {key}"})
    assert_problem(r, 500)
    assert secret_of(key) not in r.text
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert any(rec.exc_info for rec in errors), "the failing request logged no error"
    monkeypatch.undo()

    logs = _api_logs(caplog)
    assert "SELECT" in logs, "SQL was not captured: the capture is not at DEBUG"
    assert "the listing broke" in logs and "Traceback" in logs
    prod_out, down_out = flushed(prod, prod_url), flushed(down, down_url)
    # The access log is on: every request left a line, without its query string.
    assert '"GET /v1/workflows HTTP/1.1" 422' in prod_out, prod_out[-3000:]
    assert "api_key" not in prod_out and "?" not in "".join(
        line for line in prod_out.splitlines() if "HTTP/1.1" in line
    )
    assert "unavailable" in down_out, down_out[-3000:]
    workers = "".join(line for w in fleet.workers for line in list(w.lines))
    assert "quorum.step.execute" in workers, "the workers' output was not captured"
    stored = dump_database(db)
    queued = dump_redis(fleet.env["QUORUM_BROKER_URL"])
    with db.connect() as conn:
        hashes = set(conn.scalars(select(ApiKey.key_hash)))
    for k in keys:
        # Stored: the prefix (to find the key) and a hash of the secret, nothing more.
        assert prefix_of(k) in stored
        assert hashlib.sha256(secret_of(k).encode()).hexdigest() in hashes
        for where, text in (
            ("in-process API logs", logs),
            ("gunicorn output", prod_out),
            ("gunicorn output (database down)", down_out),
            ("worker output", workers),
            ("database", stored),
            ("redis", queued),
        ):
            assert k not in text, f"a full API key is in the {where}"
            assert secret_of(k) not in text, f"an API key's secret is in the {where}"


def test_keys_revoked_with_the_cli_answer_401_at_once(fleet: Fleet) -> None:
    org = f"revoke-{uuid.uuid4().hex[:8]}"
    key, kept = fleet.new_key(org), fleet.new_key(org)
    with httpx.Client(base_url=fleet.base_url, timeout=30) as c:

        def status(k: str) -> int:
            return c.get("/v1/workflows", headers={"Authorization": f"Bearer {k}"}).status_code

        assert status(key) == status(kept) == 200
        done = quorum_cli(fleet, "keys", "revoke", prefix_of(key))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"revoked {prefix_of(key)}"
        r = c.get("/v1/workflows", headers={"Authorization": f"Bearer {key}"})
        body = assert_problem(r, 401)
        assert "revoked" in body["detail"]
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
        # The organization's other key still works; revoking twice or an unknown prefix fails.
        assert status(kept) == 200
        again = quorum_cli(fleet, "keys", "revoke", prefix_of(key))
        assert again.returncode != 0 and "no active key" in again.stderr
        unknown = quorum_cli(fleet, "keys", "revoke", "qk_000000000000")
        assert unknown.returncode != 0 and "no active key" in unknown.stderr
        assert status(key) == 401


# -- rate limiting ---------------------------------------------------------------------------


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        app.extensions["quorum"].close()


def _fresh_window(margin_s: float = 15) -> None:
    """Wait for a new one-minute window if this one ends within ``margin_s``."""
    left = 60 - time.time() % 60
    if left < margin_s:
        time.sleep(left + 0.05)


def test_rate_limit_per_key_shared_by_api_instances_on_redis(fleet: Fleet) -> None:
    redis_url = fleet.env["QUORUM_BROKER_URL"]
    settings = Settings.from_env(fleet.env, rate_limit_per_minute=5, redis_url=redis_url)
    key, other = fleet.new_key("limited"), fleet.new_key("limited")
    with serving(settings) as one, serving(settings) as two:
        _fresh_window()
        seen: list[httpx.Response] = []
        for i in range(5):
            with httpx.Client(base_url=(one, two)[i % 2], timeout=30) as c:
                seen.append(c.get("/v1/workflows", headers={"Authorization": f"Bearer {key}"}))
        assert [r.status_code for r in seen] == [200] * 5
        assert [r.headers["RateLimit-Remaining"] for r in seen] == ["4", "3", "2", "1", "0"]
        assert {r.headers["RateLimit-Limit"] for r in seen} == {"5"}
        for r in seen:
            assert 1 <= int(r.headers["RateLimit-Reset"]) <= 60
        # Over the limit on either instance: the count is shared.
        for base in (one, two):
            with httpx.Client(base_url=base, timeout=30) as c:
                r = c.post(
                    "/v1/workflows",
                    json={"name": "wf", **DOUBLE},
                    headers={"Authorization": f"Bearer {key}"},
                )
                body = assert_problem(r, 429)
                assert body["type"].endswith("rate-limited")
                retry = int(r.headers["Retry-After"])
                assert 1 <= retry <= 60 and r.headers["RateLimit-Reset"] == str(retry)
                assert r.headers["RateLimit-Remaining"] == "0"
                # Another key has its own allowance.
                mine = c.get("/v1/workflows", headers={"Authorization": f"Bearer {other}"})
                assert mine.status_code == 200
                assert mine.json()["data"] == []  # the refused POST wrote nothing
        client = redis.Redis.from_url(redis_url)
        try:
            names = client.keys(f"quorum:ratelimit:{prefix_of(key)}:*")
            assert len(names) == 1
            assert 0 < int(client.ttl(names[0])) <= 120
        finally:
            client.close()


def test_rate_limit_fails_open_when_redis_is_down(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="quorum.api.ratelimit")
    settings = Settings.from_env(
        fleet.env, rate_limit_per_minute=1000, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    key = fleet.new_key("limited-down")
    with serving(settings) as base, httpx.Client(base_url=base, timeout=30) as c:
        for _ in range(3):
            t0 = time.monotonic()
            r = c.get("/v1/workflows", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
            assert time.monotonic() - t0 < 3
            assert r.headers["RateLimit-Limit"] == "1000"
    warnings = [r for r in caplog.records if r.name == "quorum.api.ratelimit"]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
