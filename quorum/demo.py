"""``quorum demo``: one consensus workflow, end to end, on the embedded default.

No external service is needed: rows go to SQLite in the data directory, messages to the
filesystem broker, and model calls to the local provider. The demo migrates the database,
creates an organization and an API key, starts a worker process and serves the API on a free
loopback port, then talks to that API over real HTTP like any client would: it creates a
workflow that uses a ``router``, a ``for_each`` and an ``extract`` with ``n_consensus: 3``,
runs it on two small invoices, prints the run with its steps and the consensus likelihoods,
and stops the worker.

Run it as ``quorum demo``, ``python -m quorum.demo`` or ``make demo``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import httpx

from engine.settings import Settings
from quorum.demo_report import print_summary

TERMINAL = frozenset({"completed", "failed", "cancelled", "aborted_looping_risk"})
# The embedded default: anything pointing elsewhere is dropped for the demo's processes.
_EXTERNAL = (
    "QUORUM_DATABASE_URL",
    "QUORUM_BROKER_URL",
    "QUORUM_REDIS_URL",
    "QUORUM_PROVIDER",
    "QUORUM_PROVIDER_BASE_URL",
    "QUORUM_PROVIDER_API_KEY",
    "QUORUM_PROVIDER_MODEL",
)

INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "invoice_number": {"type": "string"},
        "vendor": {"type": "string"},
        "total": {"type": "number"},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "paid": {"type": "boolean"},
    },
}

DOCUMENTS = [
    "invoice_number: INV-7\nvendor: ACME GmbH\ntotal: 1,234.50\ncurrency: EUR\npaid: no\n",
    "invoice_number: INV-8\nvendor: Globex Ltd\ntotal: 89.90\ncurrency: GBP\npaid: yes\n",
]


def _edge(source: str, source_handle: str, target: str, target_handle: str) -> dict[str, str]:
    return {
        "source": source,
        "source_handle": source_handle,
        "target": target,
        "target_handle": target_handle,
    }


def demo_workflow() -> dict[str, Any]:
    """A batch of invoices: skip an empty batch, extract each invoice, flag large totals."""
    return {
        "name": "invoice-batch-demo",
        "description": "quorum demo: router + for_each + extract with n_consensus 3",
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"documents": {"type": "json"}}}},
            {
                "id": "has_documents",
                "type": "router",
                "config": {
                    "routes": [{"handle": "batch", "when": "len(input) > 0"}],
                    "default": "empty",
                },
            },
            {"id": "nothing_to_do", "type": "function", "config": {"function": "noop"}},
            {
                "id": "each_invoice",
                "type": "for_each",
                "config": {
                    "body": ["extract_invoice", "check_total", "needs_review", "auto_approve"],
                    "collect": "extract_invoice",
                },
            },
            {
                "id": "extract_invoice",
                "type": "extract",
                "name": "Extract the invoice fields",
                "config": {
                    "schema": INVOICE_SCHEMA,
                    "instructions": "Read the invoice header fields.",
                    "n_consensus": 3,
                },
            },
            {
                "id": "check_total",
                "type": "router",
                "config": {
                    "routes": [{"handle": "review", "when": "input.total >= 1000"}],
                    "default": "approve",
                },
            },
            {"id": "needs_review", "type": "function", "config": {"function": "identity"}},
            {"id": "auto_approve", "type": "function", "config": {"function": "identity"}},
            {"id": "end", "type": "end"},
        ],
        "edges": [
            _edge("start", "documents", "has_documents", "input"),
            _edge("has_documents", "batch", "each_invoice", "items"),
            _edge("has_documents", "empty", "nothing_to_do", "value"),
            _edge("each_invoice", "item", "extract_invoice", "document"),
            _edge("extract_invoice", "output", "check_total", "input"),
            _edge("check_total", "review", "needs_review", "value"),
            _edge("check_total", "approve", "auto_approve", "value"),
            _edge("each_invoice", "results", "end", "invoices"),
            _edge("nothing_to_do", "output", "end", "nothing"),
        ],
    }


class DemoError(RuntimeError):
    """The demo could not finish; the message says why."""


def demo_settings(environ: Mapping[str, str] | None = None) -> tuple[Settings, dict[str, str]]:
    """Settings and process environment for the embedded default (no external service)."""
    env = dict(os.environ if environ is None else environ)
    for name in _EXTERNAL:
        env.pop(name, None)
    settings = Settings.from_env(env)
    # Pin the data directory so the worker (another process, maybe another cwd) agrees.
    data_dir = str(Path(settings.data_dir).resolve())
    env["QUORUM_DATA_DIR"] = data_dir
    env.setdefault("QUORUM_LOG_JSON", "false")
    return replace(settings, data_dir=data_dir), env


@contextmanager
def _worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    repo_root = str(Path(__file__).resolve().parents[1])
    path = env.get("PYTHONPATH")
    env = {**env, "PYTHONPATH": repo_root + (os.pathsep + path if path else "")}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quorum.cli", "worker", "-c", "2", "-n", "demo@%h"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@contextmanager
def _api_server(settings: Settings) -> Iterator[str]:
    from werkzeug.serving import make_server

    from api.app import create_app

    # Request lines would drown the summary; errors still show.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="quorum-demo-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        app.extensions["quorum"].close()


def _issue_key(settings: Settings) -> str:
    from engine.auth import issue_key
    from engine.db.session import Database

    database = Database(settings)
    try:
        with database.transaction() as s:
            return issue_key(s, "demo", name="quorum demo").key
    finally:
        database.close()


def _check(response: httpx.Response, expected: int) -> dict[str, Any]:
    if response.status_code != expected:
        raise DemoError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:500]}"
        )
    body: dict[str, Any] = response.json()
    return body


def _wait_run(
    client: httpx.Client,
    run_id: str,
    timeout_s: float,
    worker: subprocess.Popen[bytes],
    log_path: Path,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = _check(client.get(f"/v1/workflows/runs/{run_id}"), 200)
        if run["status"] in TERMINAL:
            return run
        if worker.poll() is not None:
            raise DemoError(f"the worker exited with code {worker.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            raise DemoError(
                f"run {run_id} still {run['status']} after {timeout_s:g}s "
                f"({run['progress']}); see {log_path}"
            )
        time.sleep(0.1)


def _steps(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if after:
            params["after"] = after
        page = _check(client.get(f"/v1/workflows/runs/{run_id}/steps", params=params), 200)
        steps.extend(page["data"])
        if not page["has_more"]:
            break
        after = page["next_after"]
    # Lists are newest first; a run reads best in the order its steps were created.
    return sorted(steps, key=lambda s: (s.get("created_at") or "", s["id"]))


def run_demo(*, timeout_s: float = 60.0, out: TextIO | None = None) -> dict[str, Any]:
    """Run the demo; print the summary to ``out`` (stdout); return the finished run."""
    from engine.db.migrate import upgrade

    stream = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    settings, env = demo_settings()
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "demo-worker.log"
    say("Quorum demo on the embedded default: SQLite, filesystem broker, local provider")
    say(f"  data directory  {data_dir}")
    say(f"  database        {settings.effective_database_url}")
    upgrade(settings.effective_database_url)
    key = _issue_key(settings)
    say(f"  API key         {key}  (organization 'demo')")
    say(f"  worker log      {log_path}")

    started = time.monotonic()
    with _worker(env, log_path) as worker, _api_server(settings) as base_url:
        say(f"  API             {base_url} (this process), worker pid {worker.pid}")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            workflow = _check(client.post("/v1/workflows", json=demo_workflow()), 201)
            say(f"  workflow        {workflow['id']} ({workflow['name']})")
            inputs = {"documents": DOCUMENTS}
            body = {"workflow_id": workflow["id"], "inputs": inputs, "initiator": "quorum demo"}
            queued = _check(client.post("/v1/workflows/runs", json=body), 202)
            say(f"  run             {queued['id']} ({queued['status']})")
            run = _wait_run(client, queued["id"], timeout_s, worker, log_path)
            steps = _steps(client, run["id"])
    elapsed = time.monotonic() - started
    print_summary(run, steps, elapsed_s=elapsed, say=say)
    return run


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m quorum.demo", description=__doc__)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the run")
    args = parser.parse_args(argv)
    try:
        run = run_demo(timeout_s=args.timeout)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0 if run["status"] == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
