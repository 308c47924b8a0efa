"""A plain install runs the fleet: the wheel, installed alone in a fresh venv, end to end.

What production does (the Dockerfile, README's production setup): the project's wheel with
no extras and the versions of ``constraints.txt``, nothing from this checkout on the path
(no ``PYTHONPATH``, the working directory a temporary one). Then ``quorum db upgrade``, a
``quorum worker`` and ``quorum api`` from that venv against real PostgreSQL and Redis, and
one workflow to ``completed``. A runtime dependency the project fails to declare (kombu's
redis transport needs ``packaging``) breaks the worker, ``/readyz`` and so this test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.services import require_postgres, temp_database

# Building and installing from the package index takes most of a minute; a loaded machine
# may take longer than the suite's per-test limit.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("engine", "api", "workers", "quorum")
GRAPH = {
    "name": "wheel",
    "blocks": [
        {"id": "start", "type": "start", "config": {"inputs": {"n": {"type": "json"}}}},
        {"id": "same", "type": "function", "config": {"function": "identity"}},
        {"id": "end", "type": "end"},
    ],
    "edges": [
        {"source": "start", "source_handle": "n", "target": "same", "target_handle": "value"},
        {"source": "same", "source_handle": "output", "target": "end", "target_handle": "result"},
    ],
}


def run(args: list[Any], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the checkout: no PYTHONPATH, no QUORUM_*, and
    no virtualenv of the test run on the PATH."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("QUORUM_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel and its runtime dependencies, pinned; its bin dir."""
    work = tmp_path_factory.mktemp("wheel")
    # Build from a copy of what the package is made of, so the checkout stays clean.
    src = work / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    for name in SOURCES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = clean_env()
    run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-w", work / "dist"],
        cwd=src,
        env=env,
    )
    wheels = list((work / "dist").glob("quorum-*.whl"))
    assert len(wheels) == 1, wheels
    shutil.rmtree(src)
    # The system's python, not the test run's venv: nothing of the dev install leaks in.
    # No pip inside it: this process's pip installs into it (--python), which saves
    # bootstrapping one, and nothing is byte-compiled ahead of time.
    base_python = getattr(sys, "_base_executable", sys.executable)
    run([base_python, "-m", "venv", "--without-pip", work / "venv"], cwd=work, env=env)
    bin_dir = work / "venv" / "bin"
    pip = [sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "--quiet"]
    pinned = ["--no-compile", "-c", ROOT / "constraints.txt"]
    run([*pip, *pinned, wheels[0]], cwd=work, env=env, timeout=600)
    return bin_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def services(module_broker: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    with temp_database(require_postgres()) as database_url:
        yield clean_env(
            QUORUM_DATABASE_URL=database_url,
            QUORUM_BROKER_URL=module_broker,
            QUORUM_DATA_DIR=str(tmp_path / "data"),
            QUORUM_QUEUE=f"quorum-wheel-{uuid.uuid4().hex[:8]}",
            QUORUM_LOG_JSON="false",
        )


def start(args: list[Any], *, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(a) for a in args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_ready(url: str, procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dead = [log for p, log in zip(procs, logs, strict=True) if p.poll() is not None]
        assert not dead, "\n".join(log.read_text()[-3000:] for log in dead)
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    tails = "\n".join(log.read_text()[-2000:] for log in logs)
    raise AssertionError(f"{url}/readyz never answered 200:\n{tails}")


def test_the_wheel_alone_runs_a_workflow(
    venv: Path, services: dict[str, str], tmp_path: Path
) -> None:
    cwd = tmp_path
    where = run(
        [venv / "python", "-c", "import engine, api; print(engine.__file__)"], cwd=cwd, env=services
    )
    assert str(venv.parent) in where and str(ROOT) not in where, where
    run([venv / "quorum", "db", "upgrade"], cwd=cwd, env=services, timeout=120)
    key = run([venv / "quorum", "keys", "create", "--org", "wheel"], cwd=cwd, env=services)
    key = key.strip().splitlines()[-1]

    port = free_port()
    logs = [tmp_path / "worker.log", tmp_path / "api.log"]
    procs = [
        start([venv / "quorum", "worker", "-c", "1"], cwd=cwd, env=services, log=logs[0]),
        start(
            [venv / "quorum", "api", "--port", port, "--workers", "1"],
            cwd=cwd,
            env=services,
            log=logs[1],
        ),
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, procs, logs)
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as api:
            wf = api.post("/v1/workflows", json=GRAPH)
            assert wf.status_code == 201, wf.text
            started = api.post(
                "/v1/workflows/runs", json={"workflow_id": wf.json()["id"], "inputs": {"n": 21}}
            )
            assert started.status_code == 202, started.text
            deadline = time.monotonic() + 60
            while (run_ := api.get(f"/v1/workflows/runs/{started.json()['id']}").json())[
                "status"
            ] != "completed":
                assert run_["status"] not in ("failed", "cancelled"), run_
                assert time.monotonic() < deadline, (run_, logs[0].read_text()[-3000:])
                time.sleep(0.2)
        assert run_["io_pairs"][0]["output"] == {"result": 21}
    finally:
        stop(procs)
