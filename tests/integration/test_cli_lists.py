"""``quorum runs list`` and ``quorum workflows list`` as a user runs them, against the fleet."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.test_cli import quorum
from tests.support.fleet import Api, Fleet

pytestmark = pytest.mark.integration


def _graph(function: str) -> dict[str, object]:
    return {
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
            {"id": "work", "type": "function", "config": {"function": function}},
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"source": "start", "source_handle": "x", "target": "work", "target_handle": "value"},
            {"source": "work", "source_handle": "output", "target": "end", "target_handle": "y"},
        ],
    }


@pytest.fixture
def org(fleet: Fleet) -> Iterator[tuple[Api, str]]:
    key = fleet.new_key(f"org-cli-lists-{uuid.uuid4().hex[:8]}")
    api = Api(fleet.base_url, key)
    yield api, key
    api.close()


def test_runs_list_filters_and_prints_a_table_or_json(fleet: Fleet, org: tuple[Api, str]) -> None:
    api, key = org
    q = functools.partial(quorum, key=key, url=fleet.base_url)
    good = api.create_workflow(_graph("double"), name="doubler")
    bad = api.create_workflow(_graph("explode"), name="exploder")
    ok = api.wait_run(api.start_run(good["id"], {"x": 2})["id"])
    failed = api.wait_run(api.start_run(bad["id"], {"x": 2})["id"])
    assert (ok["status"], failed["status"]) == ("completed", "failed")

    done = q("runs", "list")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:5] == ["run", "workflow", "version", "status", "steps"]
    assert [r.split()[0] for r in rows] == [failed["id"], ok["id"]]  # newest first
    assert rows[0].split()[1:4] == ["exploder", "0", "failed"]
    assert "execution_error in block work: ValueError: exploded on purpose" in rows[0]
    assert rows[1].split()[1:5] == ["doubler", "0", "completed", "3/3"]

    done = q("runs", "list", "--status", "failed", "--json")
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert [r["id"] for r in page["data"]] == [failed["id"]]
    assert page["data"][0]["error"]["block_id"] == "work" and page["has_more"] is False

    args = ("runs", "list", "--workflow-id", good["id"], "--since", "10m", "--json")
    out = q(*args)
    assert out.returncode == 0, out.stderr
    page = json.loads(out.stdout)
    assert [r["id"] for r in page["data"]] == [ok["id"]]
    later = q("runs", "list", "--since", "2099-01-01T00:00:00Z")
    assert later.returncode == 0 and later.stdout == "" and "no runs" in later.stderr
    # Both runs may share a long prefix (same second, same process): the whole id, any case.
    found = q("runs", "list", "--id", ok["id"].upper(), "--json")
    assert [r["id"] for r in json.loads(found.stdout)["data"]] == [ok["id"]]

    # Paging: one per page, the cursor on stderr.
    first = q("runs", "list", "--limit", "1")
    assert f"--after {failed['id']}" in first.stderr
    second = q("runs", "list", "--limit", "1", "--after", failed["id"])
    assert second.stdout.splitlines()[1].split()[0] == ok["id"]


def test_bad_list_options_exit_1_or_2_with_one_line(fleet: Fleet, org: tuple[Api, str]) -> None:
    _, key = org
    q = functools.partial(quorum, key=key, url=fleet.base_url)
    bad = q("runs", "list", "--id", "xyz")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: 422 Unprocessable Content") and "id_prefix" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    usage = q("runs", "list", "--since", "last tuesday")
    assert usage.returncode == 2 and "neither an ISO 8601 time" in usage.stderr
    usage = q("runs", "list", "--status", "done")
    assert usage.returncode == 2


def test_workflows_list(fleet: Fleet, org: tuple[Api, str]) -> None:
    api, key = org
    q = functools.partial(quorum, key=key, url=fleet.base_url)
    made = [api.create_workflow(_graph("double"), name=f"wf-{i}")["id"] for i in range(3)]
    time.sleep(0.01)
    done = q("workflows", "list")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:2] == ["workflow", "name"]
    assert [(r.split()[0], r.split()[1], r.split()[2]) for r in rows] == [
        (made[2], "wf-2", "0"),
        (made[1], "wf-1", "0"),
        (made[0], "wf-0", "0"),
    ]
    page = json.loads(q("workflows", "list", "--limit", "2", "--json").stdout)
    assert [w["id"] for w in page["data"]] == made[:0:-1]
    assert page["has_more"] is True and page["next_after"] == made[1]
