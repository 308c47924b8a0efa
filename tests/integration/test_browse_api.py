"""What the browser UI reads beyond the contract, against the real fleet: run list filters,
the organization's run feed, the draft diff, steps' queue time and worker, executions by
workflow."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.support.fleet import Api, Fleet

pytestmark = pytest.mark.integration

START = {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}}
END = {"id": "end", "type": "end"}


def fn(block_id: str, function: str, **params: Any) -> dict[str, Any]:
    return {"id": block_id, "type": "function", "config": {"function": function, "params": params}}


def edge(src: str, sh: str, dst: str, th: str) -> dict[str, str]:
    return {"source": src, "source_handle": sh, "target": dst, "target_handle": th}


def chain(*blocks: dict[str, Any]) -> dict[str, Any]:
    ids = ["start", *(b["id"] for b in blocks), "end"]
    edges = [edge("start", "x", ids[1], "value")]
    edges += [edge(a, "output", b, "value") for a, b in itertools.pairwise(ids[1:])]
    return {"blocks": [START, *blocks, END], "edges": edges}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def listed(api: Api, **params: Any) -> list[str]:
    r = api.get("/v1/workflows/runs", params=params)
    assert r.status_code == 200, r.text
    return [run["id"] for run in r.json()["data"]]


def problem(r: httpx.Response) -> list[tuple[list[Any], str]]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [(e["loc"], e["msg"]) for e in r.json()["errors"]]


@pytest.fixture
def other(fleet: Fleet) -> Iterator[Api]:
    client = Api(fleet.base_url, fleet.new_key(f"org-other-{uuid.uuid4().hex[:6]}"))
    yield client
    client.close()


def test_runs_filter_by_creation_time_and_id_prefix(api: Api, other: Api) -> None:
    wf = api.create_workflow(chain(fn("a", "double")))
    first = api.start_run(wf["id"], {"x": 1})
    time.sleep(1.1)  # ids carry seconds: the next runs start in a later second
    second = api.start_run(wf["id"], {"x": 2})
    third = api.start_run(wf["id"], {"x": 3})
    created = {r["id"]: datetime.fromisoformat(r["created_at"]) for r in (first, second, third)}
    ids = [third["id"], second["id"], first["id"]]
    assert listed(api) == ids

    at_second = created[second["id"]]
    assert listed(api, created_from=iso(at_second)) == ids[:2]
    assert listed(api, created_to=iso(at_second)) == ids[2:]
    assert listed(api, created_from=iso(at_second), created_to=iso(created[third["id"]])) == [
        second["id"]
    ]
    # Another time zone, the same instant (httpx encodes the '+').
    paris = at_second.astimezone(ZoneInfo("Europe/Paris")).isoformat()
    assert "+01:00" in paris or "+02:00" in paris
    assert listed(api, created_from=paris) == ids[:2]
    assert listed(api, created_from=iso(datetime.now(UTC) + timedelta(minutes=1))) == []

    # An id prefix: the whole id, the first run's second, what the later two share.
    assert listed(api, id_prefix=second["id"]) == [second["id"]]
    assert listed(api, id_prefix=first["id"][:8]) == [first["id"]]
    shared = next(
        second["id"][:n] for n in range(24, 0, -1) if third["id"].startswith(second["id"][:n])
    )
    assert listed(api, id_prefix=shared) == [i for i in ids if i.startswith(shared)]
    assert second["id"] in listed(api, id_prefix=shared)
    assert listed(api, id_prefix="f" * 24) == []
    # Filters combine with the contract's, and never cross organizations.
    assert listed(api, workflow_id=wf["id"], id_prefix=first["id"][:10]) == [first["id"]]
    assert listed(other, id_prefix=first["id"][:8]) == []
    assert listed(other, created_from=iso(created[first["id"]] - timedelta(hours=1))) == []


def test_bad_list_filters_are_422_naming_the_parameter(api: Api) -> None:
    for params, loc in (
        ({"created_from": "2026-03-01T12:00:00"}, "created_from"),  # no time zone
        ({"created_to": "yesterday"}, "created_to"),
        ({"id_prefix": "XYZ"}, "id_prefix"),
        ({"id_prefix": "0" * 25}, "id_prefix"),
        ({"id_prefix": ""}, "id_prefix"),
    ):
        errors = problem(api.get("/v1/workflows/runs", params=params))
        assert errors and errors[0][0] == ["query", loc], (params, errors)
    errors = problem(
        api.get(
            "/v1/workflows/runs",
            params={"created_from": "2026-03-01T12:00:00Z", "created_to": "2026-03-01T11:00:00Z"},
        )
    )
    assert errors == [(["query", "created_to"], "Value error, must be later than created_from")]
    errors = problem(api.get("/v1/workflows/blocks/executions", params={"workflow_id": "nope"}))
    assert errors[0][0] == ["query", "workflow_id"]


def test_failed_runs_show_their_failing_block_in_lists_and_steps_their_queue_and_worker(
    api: Api,
) -> None:
    wf = api.create_workflow(chain(fn("prepare", "double"), fn("boom", "explode", message="no")))
    run = api.wait_run(api.start_run(wf["id"], {"x": 1})["id"])
    assert run["status"] == "failed"
    (summary,) = [r for r in api.get("/v1/workflows/runs").json()["data"] if r["id"] == run["id"]]
    assert summary["termination_reason"] == "execution_error"
    assert summary["error"]["block_id"] == "boom"
    assert summary["error"] == run["error"]
    steps = {s["block_id"]: s for s in api.steps(run["id"])}
    for block in ("start", "prepare", "boom"):
        st = steps[block]
        assert st["worker"] and ":" in st["worker"], st
        assert st["created_at"] <= st["started_at"] <= st["completed_at"], st
        # A step handed to the broker carries when; one created already running under its
        # predecessor's worker (in-process) was never queued.
        if st["queued_at"] is not None:
            assert st["created_at"] <= st["queued_at"] <= st["started_at"], st
    assert steps["start"]["queued_at"] is not None


def test_the_draft_diff_against_any_version(api: Api, other: Api) -> None:
    wf = api.create_workflow(chain(fn("a", "double"), fn("b", "double")), name="diffed")
    base = f"/v1/workflows/{wf['id']}/draft/diff"
    same = api.get(base).json()
    assert same == {
        "workflow_id": wf["id"],
        "version": 0,
        "identical": True,
        "blocks": {"added": [], "removed": [], "changed": []},
        "edges": {"added": [], "removed": []},
    }
    r = api.http.patch(
        f"/v1/workflows/{wf['id']}/draft/blocks/b", json={"config": {"function": "add"}}
    )
    assert r.status_code == 200, r.text
    assert api.post(f"/v1/workflows/{wf['id']}/versions", {"name": "one"}).status_code == 201
    # A new block between a and b in the draft, and a renamed a (names do not count).
    graph = chain(fn("a", "double"), fn("c", "inc"), fn("b", "add"))
    graph["blocks"][1]["name"] = "Renamed"
    graph["blocks"][3]["config"] = {"function": "add"}  # as patched above: unchanged
    r = api.http.put(f"/v1/workflows/{wf['id']}/draft", json=graph)
    assert r.status_code == 200, r.text

    latest = api.get(base).json()
    assert latest["version"] == 1 and latest["identical"] is False
    assert latest["blocks"] == {"added": ["c"], "removed": [], "changed": []}
    assert latest["edges"] == {
        "added": ["a.output->c.value", "c.output->b.value"],
        "removed": ["a.output->b.value"],
    }
    v0 = api.get(base, params={"version": 0}).json()
    assert v0["version"] == 0 and v0["blocks"]["changed"] == ["b"]
    assert v0["blocks"]["added"] == ["c"]

    assert api.get(base, params={"version": 7}).status_code == 404
    assert problem(api.get(base, params={"version": -1}))[0][0] == ["query", "version"]
    assert problem(api.get(base, params={"against": 0}))[0][0] == ["query", "against"]
    assert other.get(base).status_code == 404
    assert api.get("/v1/workflows/0123456789abcdef01234567/draft/diff").status_code == 404


def test_executions_list_by_workflow(api: Api, other: Api) -> None:
    one = api.create_workflow(chain(fn("a", "double")), name="one")
    two = api.create_workflow(chain(fn("a", "double")), name="two")
    made: dict[str, str] = {}
    for wf in (one, two):
        run = api.wait_run(api.start_run(wf["id"], {"x": 2})["id"])
        r = api.post("/v1/workflows/blocks/executions", {"run_id": run["id"], "block_id": "a"})
        assert r.status_code == 202, r.text
        made[wf["id"]] = r.json()["id"]
    for wf in (one, two):
        page = api.get(
            "/v1/workflows/blocks/executions", params={"workflow_id": wf["id"], "block_id": "a"}
        ).json()
        assert [ex["id"] for ex in page["data"]] == [made[wf["id"]]]
    assert (
        other.get("/v1/workflows/blocks/executions", params={"workflow_id": one["id"]}).json()[
            "data"
        ]
        == []
    )


# -- the organization's run feed ------------------------------------------------------------


@dataclass
class Feed:
    """Reads GET /v1/workflows/runs/events in a thread (its own SSE parser)."""

    base_url: str
    key: str
    last_event_id: int | None = None
    ids: list[int] = field(default_factory=list)  # every id line, with or without an event
    events: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None
    error: BaseException | None = None
    stopping: bool = False
    http: httpx.Client | None = None
    thread: threading.Thread | None = None

    def start(self) -> Feed:
        self.http = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(10, read=60))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        self.stopping = True
        assert self.http is not None and self.thread is not None
        self.http.close()  # the reader's next read fails: it ends
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        assert self.error is None, self.error

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        assert self.http is not None
        try:
            with self.http.stream("GET", "/v1/workflows/runs/events", headers=headers) as r:
                self.status = r.status_code
                self._parse(r.iter_lines())
        except (httpx.HTTPError, RuntimeError) as exc:
            if not self.stopping:
                self.error = exc

    def _parse(self, lines: Iterator[str]) -> None:
        fields: dict[str, str] = {}
        for line in lines:
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
                continue
            if "id" in fields:
                self.ids.append(int(fields["id"]))
            if "data" in fields:
                assert fields["event"] == "run"
                self.events.append({"seq": int(fields["id"]), **json.loads(fields["data"])})
            fields = {}

    def wait(self, what: str, done: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"{what}: {self.events}"
            time.sleep(0.05)


def test_the_feed_carries_the_organizations_run_events_from_now_and_resumes(
    fleet: Fleet, api: Api, other: Api
) -> None:
    wf = api.create_workflow(chain(fn("a", "double"), fn("b", "slow", seconds=0.3)))
    before = api.wait_run(api.start_run(wf["id"], {"x": 1})["id"])
    key = api.http.headers["Authorization"].removeprefix("Bearer ")
    feed = Feed(fleet.base_url, key).start()
    try:
        feed.wait("the position", lambda: bool(feed.ids))
        assert feed.status == 200
        theirs_wf = other.create_workflow(chain(fn("a", "double")))
        theirs = other.start_run(theirs_wf["id"], {"x": 5})["id"]
        mine = api.start_run(wf["id"], {"x": 2})["id"]
        feed.wait("the run's end", lambda: any(e["status"] == "completed" for e in feed.events))
        other.wait_run(theirs)
    finally:
        feed.close()
    # From now on: nothing of the run that ended before the feed opened; nothing of another
    # organization; the run's statuses in order, with its progress.
    assert {e["run_id"] for e in feed.events} == {mine}, feed.events
    assert before["id"] != mine
    statuses = [e["status"] for e in feed.events]
    assert statuses[0] == "not_started" and statuses[-1] == "completed", statuses
    assert feed.events[-1]["progress"]["steps_done"] == feed.events[-1]["progress"]["steps_total"]
    seqs = [e["seq"] for e in feed.events]
    assert seqs == sorted(set(seqs)) and feed.ids[0] < seqs[0]

    # Resumed after its first event: exactly the rest, replayed.
    again = Feed(fleet.base_url, key, last_event_id=seqs[0]).start()
    try:
        again.wait("the replay", lambda: len(again.events) >= len(seqs) - 1)
    finally:
        again.close()
    assert [e["seq"] for e in again.events] == seqs[1:]
    assert again.ids[: len(seqs) - 1] == seqs[1:]  # no position line when resuming


def test_the_feed_needs_a_key_and_a_valid_resume_point(fleet: Fleet, api: Api) -> None:
    assert httpx.get(f"{fleet.base_url}/v1/workflows/runs/events").status_code == 401
    r = api.get("/v1/workflows/runs/events", headers={"Last-Event-ID": "nope"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]
    assert problem(api.get("/v1/workflows/runs/events", params={"after": -1}))
