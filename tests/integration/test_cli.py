"""The ``quorum`` client commands as a user runs them: a subprocess against the fleet's API."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.fleet import ROOT, Api, Fleet

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "examples" / "invoice.json"
RUN_ID = re.compile(r"run ([0-9a-f]{24}) ")


def quorum(
    *args: str, key: str | None = None, url: str | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env["PYTHONPATH"] = str(ROOT)
    if key is not None:
        env["QUORUM_API_KEY"] = key
    if url is not None:
        env["QUORUM_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "quorum.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def key(fleet: Fleet) -> str:
    return fleet.new_key(f"org-cli-{uuid.uuid4().hex[:8]}")


def run_id_of(text: str) -> str:
    found = RUN_ID.search(text)
    assert found, text
    return found.group(1)


def test_run_watch_shows_progress_and_the_output(fleet: Fleet, key: str) -> None:
    done = quorum("run", str(EXAMPLE), "--watch", "--url", fleet.base_url, "--key", key)
    assert done.returncode == 0, done.stderr
    bars = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert bars and re.fullmatch(r"\[#{24}\] 6/6 steps  completed", bars[-1]), done.stderr
    assert any(re.search(r"\[#*-+\] \d/\d steps  running", b) for b in bars), bars
    assert "workflow " in done.stderr and "created (invoice-triage)" in done.stderr
    head, _, output = done.stdout.partition("\n")
    assert re.fullmatch(r"run [0-9a-f]{24} completed in \d+\.\d s", head), done.stdout
    assert json.loads(output)["needs_review"]["invoice_number"] == "INV-7"

    # The environment names the API and the key; --input overrides the file's inputs.
    small = "invoice_number: INV-8\ntotal: 89.90\ncurrency: GBP"
    done = quorum("run", str(EXAMPLE), "--input", f"invoice={small}", key=key, url=fleet.base_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.partition("\n")[2])["approved"]["total"] == 89.9


def test_run_no_watch_prints_the_id_and_status_shows_the_run(fleet: Fleet, key: str) -> None:
    api = Api(fleet.base_url, key)
    try:
        started = quorum("run", str(EXAMPLE), "--no-watch", key=key, url=fleet.base_url)
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{24}", run_id)
        run = api.wait_run(run_id)
        assert run["status"] == "completed"
        # --workflow-id: a file is not needed; --inputs-json then --input.
        again = quorum(
            "run",
            "--workflow-id",
            run["workflow_id"],
            "--version",
            "0",
            "--inputs-json",
            json.dumps({"invoice": "total: 5"}),
            key=key,
            url=fleet.base_url,
        )
        assert again.returncode == 0, again.stderr
        assert "approved" in again.stdout
    finally:
        api.close()
    shown = quorum("status", run_id, "--steps", key=key, url=fleet.base_url)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^status\s+completed$", shown.stdout, re.M), shown.stdout
    assert re.search(r"^progress\s+6/6 steps$", shown.stdout, re.M)
    assert re.search(r"^\s+extract\s+extract\s+completed", shown.stdout, re.M)
    as_json = quorum("status", run_id, "--json", key=key, url=fleet.base_url)
    assert json.loads(as_json.stdout)["id"] == run_id


def test_errors_are_one_line_with_an_exit_code(fleet: Fleet, key: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "blocks": [{"id": "start", "type": "nope"}]}))
    failed = quorum("run", str(bad), key=key, url=fleet.base_url)
    assert failed.returncode == 1
    assert failed.stdout == ""
    lines = failed.stderr.splitlines()
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith("error: 422 Unprocessable Content — "), lines[0]
    assert "nope" in lines[0]

    missing = quorum("status", "0" * 24, key=key, url=fleet.base_url)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: 404 Not Found — run {'0' * 24} not found"

    unauthorized = quorum("status", "0" * 24, key="qk_wrong", url=fleet.base_url)
    assert unauthorized.returncode == 1 and unauthorized.stderr.startswith("error: 401 ")

    # Usage mistakes exit 2: no key, a bad option value, nothing to run.
    assert quorum("run", str(EXAMPLE), url=fleet.base_url).returncode == 2
    assert quorum("run", str(EXAMPLE), "--version", "x", key=key).returncode == 2
    assert quorum("run", key=key, url=fleet.base_url).returncode == 2
    not_json = tmp_path / "x.json"
    not_json.write_text("{")
    assert quorum("run", str(not_json), key=key, url=fleet.base_url).returncode == 2

    failing = tmp_path / "failing.json"
    failing.write_text(
        json.dumps(
            {
                "name": "failing",
                "blocks": [
                    {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
                    {
                        "id": "boom",
                        "type": "function",
                        "config": {"function": "explode", "params": {"message": "no way"}},
                    },
                    {"id": "end", "type": "end"},
                ],
                "edges": [
                    {
                        "source": "start",
                        "source_handle": "x",
                        "target": "boom",
                        "target_handle": "value",
                    },
                    {
                        "source": "boom",
                        "source_handle": "output",
                        "target": "end",
                        "target_handle": "r",
                    },
                ],
                "inputs": {"x": 1},
            }
        )
    )
    run = quorum("run", str(failing), key=key, url=fleet.base_url)
    assert run.returncode == 1
    assert re.search(r"^run [0-9a-f]{24} failed \(execution_error\)", run.stdout, re.M)
    assert re.search(r"^error: run [0-9a-f]{24} failed — block boom: .*no way", run.stderr, re.M)

    down = quorum("status", "0" * 24, key=key, url="http://127.0.0.1:9")
    assert down.returncode == 1 and down.stderr.startswith("error: cannot reach")


def test_rerun_and_fork(fleet: Fleet, key: str) -> None:
    first = quorum("run", str(EXAMPLE), key=key, url=fleet.base_url)
    assert first.returncode == 0, first.stderr
    run_id = run_id_of(first.stdout)

    rerun = quorum(
        "rerun", run_id, "extract", "--n-consensus", "5", "--watch", key=key, url=fleet.base_url
    )
    assert rerun.returncode == 0, rerun.stderr
    assert re.match(r"block execution [0-9a-f]{24} completed", rerun.stdout), rerun.stdout
    assert '"invoice_number": "INV-7"' in rerun.stdout
    queued = quorum(
        "rerun", run_id, "review", "--no-check-eligibility", key=key, url=fleet.base_url
    )
    assert queued.returncode == 0, queued.stderr
    assert re.fullmatch(r"[0-9a-f]{24}\n", queued.stdout)
    wrong = quorum("rerun", run_id, "extract", "--n-consensus", "4", key=key, url=fleet.base_url)
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: 422 ")

    fork = quorum(
        "fork",
        run_id,
        "--turn",
        "0",
        "--input-json",
        json.dumps({"invoice": "invoice_number: INV-9\ntotal: 12.00\ncurrency: USD"}),
        "--watch",
        key=key,
        url=fleet.base_url,
    )
    assert fork.returncode == 0, fork.stderr
    assert f"forked from {run_id} at turn 0" in fork.stderr
    assert "[########################] 6/6 steps  completed" in fork.stderr
    child = run_id_of(fork.stdout)
    assert json.loads(fork.stdout.partition("\n")[2])["approved"]["invoice_number"] == "INV-9"
    status = quorum("status", child, key=key, url=fleet.base_url)
    assert re.search(rf"^forked from\s+{run_id} at turn 0$", status.stdout, re.M), status.stdout
    out_of_range = quorum("fork", run_id, "--turn", "3", key=key, url=fleet.base_url)
    assert out_of_range.returncode == 1 and out_of_range.stderr.startswith("error: 422 ")
