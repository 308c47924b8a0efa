"""``quorum demo`` end to end: a fresh data directory, a worker process, real HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_consensus_workflow_and_prints_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env.update(QUORUM_DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "quorum.cli", "demo", "--timeout", "30"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert elapsed < 40, elapsed

    # Everything lives in the data directory: SQLite, the filesystem broker, the worker log.
    assert (tmp_path / "quorum.sqlite3").is_file()
    assert (tmp_path / "broker").is_dir()
    assert f"sqlite:///{tmp_path / 'quorum.sqlite3'}" in out
    assert re.search(
        r"^Run [0-9a-f]{24}: status completed \(termination_reason: none\)$", out, re.M
    )
    assert "  progress {'steps_total': 13, 'steps_done': 13}" in out

    # The steps, with the router's choices and the skipped branches.
    def step_line(step_id: str) -> str:
        found = [line for line in out.splitlines() if line.strip().startswith(step_id + " ")]
        assert len(found) == 1, (step_id, out)
        return found[0]

    assert "-> batch" in step_line("has_documents")
    assert "skipped" in step_line("nothing_to_do")
    for i in (0, 1):
        line = step_line(f"each_invoice[{i}]/extract_invoice")
        assert re.search(r"completed +\d+ ms +n_consensus 3$", line), line
    assert "-> review" in step_line("each_invoice[0]/check_total")
    assert "-> approve" in step_line("each_invoice[1]/check_total")
    assert "skipped" in step_line("each_invoice[0]/auto_approve")
    assert "skipped" in step_line("each_invoice[1]/needs_review")

    # The io pair's output is the extracted invoices, in input order.
    assert '"invoice_number": "INV-7"' in out and '"total": 1234.5' in out
    assert out.index('"INV-7"') < out.index('"INV-8"')

    # One likelihood per field of each extraction; the local provider always agrees.
    assert out.count("3 of 3 attempts answered") == 2
    likelihoods = re.findall(r"^ {4}(\w+) +(.+?) +likelihood (\d\.\d\d)$", out, re.M)
    fields = ["invoice_number", "vendor", "total", "currency", "paid"]
    assert [name for name, _, _ in likelihoods] == fields * 2, out
    assert {value for _, _, value in likelihoods} == {"1.00"}
    assert ("total", "89.9", "1.00") in likelihoods
    assert "the local provider is deterministic" in out
    assert "Model calls: 6" in out

    # The worker was stopped (and reaped) before the demo exited.
    pid = int(re.search(r"worker pid (\d+)", out).group(1))  # type: ignore[union-attr]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "Warm shutdown" in (tmp_path / "demo-worker.log").read_text()
