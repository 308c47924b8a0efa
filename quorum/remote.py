"""The ``quorum`` commands that talk to a running API: ``run``, ``rerun``, ``fork``, ``status``.

They use the Python client (:mod:`quorum.client`). Connection: ``--url`` (``$QUORUM_URL``,
default ``http://127.0.0.1:8000``) and ``--key`` (``$QUORUM_API_KEY``). Progress goes to
stderr, results to stdout. An API problem prints one ``error: ...`` line on stderr and exits
1; a usage mistake exits 2.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from quorum.client import Client, Event, Run

DEFAULT_URL = "http://127.0.0.1:8000"
WAITING = "waiting_for_user_input"
BAR_WIDTH = 24


class ApiFailure(click.ClickException):
    """One ``error: ...`` line on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--key",
        envvar="QUORUM_API_KEY",
        show_envvar=True,
        default=None,
        help="API key (quorum keys create --org NAME)",
    )(fn)
    return click.option(
        "--url",
        envvar="QUORUM_URL",
        show_envvar=True,
        default=DEFAULT_URL,
        show_default=True,
        help="the Quorum API",
    )(fn)


@contextmanager
def connect(url: str, key: str | None) -> Iterator[Client]:
    if not key:
        raise click.UsageError("an API key is required: pass --key or set QUORUM_API_KEY")
    from quorum.client import Client, QuorumError

    try:
        with Client(url, key) as client:
            yield client
    except QuorumError as exc:
        raise ApiFailure(_one_line(str(exc))) from None


class VersionType(click.ParamType):
    name = "N|draft"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or value == "draft":
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        self.fail(f"{value!r} is neither a version number nor 'draft'", param, ctx)


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=what) from None


def _inputs(base: Any, inputs_json: str | None, pairs: tuple[str, ...]) -> dict[str, Any]:
    inputs: dict[str, Any] = dict(base) if isinstance(base, dict) else {}
    if inputs_json is not None:
        extra = _json_arg(inputs_json, "--inputs-json")
        if not isinstance(extra, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--inputs-json")
        inputs.update(extra)
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--input")
        try:
            inputs[name] = json.loads(raw)
        except ValueError:
            inputs[name] = raw  # not JSON: the text itself
    return inputs


class ProgressBar:
    """Steps done / total on stderr: redrawn in place on a terminal, a line per change
    otherwise (logs, CI)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream: IO[str] = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.last: tuple[str, int, int] | None = None
        self.drawn = False

    def update(self, status: str, done: int, total: int) -> None:
        state = (status, done, total)
        if state == self.last:
            return
        if self.last is not None and (done < self.last[1] or total < self.last[2]):
            return  # a replayed, older event: progress never goes back
        self.last = state
        filled = min(BAR_WIDTH, BAR_WIDTH * done // total) if total else 0
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = f"[{bar}] {done}/{total} steps  {status}"
        if self.tty:
            click.echo(f"\r{line}\x1b[K", file=self.stream, nl=False)
            self.drawn = True
        else:
            click.echo(line, file=self.stream)

    def on_event(self, event: Event) -> None:
        if event.kind == "run" and event.status and event.progress is not None:
            self.update(event.status, event.progress.steps_done, event.progress.steps_total)

    def close(self) -> None:
        if self.drawn:
            click.echo("", file=self.stream)
            self.drawn = False


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def watch_run(client: Client, run_id: str, timeout: float | None) -> int:
    """Follow the run with a progress bar; print its end; the exit code it deserves."""
    bar = ProgressBar()
    started = time.monotonic()
    run = client.runs.get(run_id)
    bar.update(run.status, run.progress.steps_done, run.progress.steps_total)
    try:
        run = client.runs.wait(run_id, timeout=timeout, until={WAITING}, on_event=bar.on_event)
    finally:
        bar.close()
    bar.update(run.status, run.progress.steps_done, run.progress.steps_total)
    bar.close()
    return report_end(run, time.monotonic() - started)


def report_end(run: Run, elapsed_s: float) -> int:
    if run.status == WAITING:
        awaiting = run.output.get("awaiting_input") if isinstance(run.output, dict) else None
        click.echo(f"run {run.id} {run.status} after {elapsed_s:.1f} s")
        if awaiting:
            click.echo(_dump(awaiting))
        return 0
    reason = f" ({run.termination_reason})" if run.termination_reason else ""
    click.echo(f"run {run.id} {run.status}{reason} in {elapsed_s:.1f} s")
    if run.status == "completed":
        click.echo(_dump(run.output))
        return 0
    error = run.error or {}
    detail = error.get("message") or run.termination_reason or run.status
    where = f"block {error['block_id']}: " if error.get("block_id") else ""
    click.echo(f"error: run {run.id} {run.status} — {where}{_one_line(str(detail))}", err=True)
    return 1


def _load_file(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(str(exc), param_hint="FILE") from None
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="FILE") from None
    if not isinstance(doc, dict):
        raise click.BadParameter("must hold a JSON object", param_hint="FILE")
    return doc


GRAPH_KEYS = ("name", "description", "blocks", "edges", "settings")


@click.command("run")
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--workflow-id", default=None, help="run this workflow instead of creating one")
@click.option(
    "--input", "pairs", multiple=True, metavar="NAME=VALUE", help="an input (JSON or text)"
)
@click.option("--inputs-json", default=None, metavar="JSON", help="the inputs as a JSON object")
@click.option("--version", "version", type=VersionType(), default=None, help="N or draft")
@click.option("--watch/--no-watch", default=True, show_default=True, help="follow the run")
@click.option("--timeout", default=600.0, show_default=True, help="seconds to watch")
@connection_options
def run_command(
    file: Path | None,
    workflow_id: str | None,
    pairs: tuple[str, ...],
    inputs_json: str | None,
    version: int | str | None,
    watch: bool,
    timeout: float,
    url: str,
    key: str | None,
) -> None:
    """Run a workflow: FILE.json holds a workflow (name, blocks, edges...) to create and,
    optionally, "inputs" for the run; or pass --workflow-id.

    With --watch (the default) a progress bar follows the run to its end, then its status
    and output are printed; the exit code is 0 for a completed run (or one waiting for
    input), 1 otherwise. With --no-watch the run id is printed alone.
    """
    doc = _load_file(file) if file is not None else {}
    has_graph = "blocks" in doc
    wf_id = workflow_id or (None if has_graph else doc.get("workflow_id"))
    if not has_graph and not wf_id:
        raise click.UsageError("give a FILE with blocks, or --workflow-id")
    inputs = _inputs(doc.get("inputs"), inputs_json, pairs)
    with connect(url, key) as client:
        if wf_id is None:
            graph = {k: doc[k] for k in GRAPH_KEYS if k in doc}
            graph.setdefault("name", file.stem if file is not None else "workflow")
            wf = client.workflows.create(
                graph["name"],
                graph["blocks"],
                graph.get("edges") or [],
                description=graph.get("description"),
                settings=graph.get("settings"),
            )
            wf_id = wf.id
            click.echo(f"workflow {wf.id} created ({wf.name})", err=True)
        run = client.runs.create(str(wf_id), inputs, version=version, initiator="quorum-cli")
        click.echo(f"run {run.id} started (version {run.version})", err=True)
        if not watch:
            click.echo(run.id)
            return
        code = watch_run(client, run.id, timeout)
    sys.exit(code)


@click.command("rerun")
@click.argument("run_id")
@click.argument("block_id")
@click.option("--step-id", default=None, help="the step whose inputs to use (a for_each iteration)")
@click.option("--n-consensus", type=int, default=None, help="3, 5 or 7 (model blocks)")
@click.option(
    "--no-check-eligibility",
    "no_check",
    is_flag=True,
    help="run even when blocks upstream changed in the draft",
)
@click.option("--watch", is_flag=True, help="wait for the execution and print its outputs")
@click.option("--timeout", default=600.0, show_default=True, help="seconds to watch")
@connection_options
def rerun_command(
    run_id: str,
    block_id: str,
    step_id: str | None,
    n_consensus: int | None,
    no_check: bool,
    watch: bool,
    timeout: float,
    url: str,
    key: str | None,
) -> None:
    """Re-run BLOCK_ID of the current draft with the inputs it saw in RUN_ID."""
    with connect(url, key) as client:
        ex = client.block_executions.create(
            run_id,
            block_id,
            step_id=step_id,
            n_consensus=n_consensus,
            check_eligibility=False if no_check else None,
        )
        click.echo(f"block execution {ex.id} {ex.status} (step {ex.source_step_id})", err=True)
        if not watch:
            click.echo(ex.id)
            return
        ex = client.block_executions.wait(ex.id, timeout=timeout)
    took = f" in {ex.duration_ms} ms" if ex.duration_ms is not None else ""
    click.echo(f"block execution {ex.id} {ex.status}{took}")
    if ex.status == "completed":
        click.echo(_dump(ex.handle_outputs))
        if ex.consensus:
            click.echo(_dump({"consensus": ex.consensus}))
        return
    detail = ex.lifecycle.message or ex.lifecycle.reason or ex.status
    click.echo(f"error: block execution {ex.id} {ex.status} — {_one_line(str(detail))}", err=True)
    sys.exit(1)


@click.command("fork")
@click.argument("run_id")
@click.option("--turn", "turn", type=click.IntRange(min=0), required=True, help="turn to resume at")
@click.option("--input-json", default=None, metavar="JSON", help="replaces that turn's input")
@click.option("--watch", is_flag=True, help="follow the new run with a progress bar")
@click.option("--timeout", default=600.0, show_default=True, help="seconds to watch")
@connection_options
def fork_command(
    run_id: str,
    turn: int,
    input_json: str | None,
    watch: bool,
    timeout: float,
    url: str,
    key: str | None,
) -> None:
    """Start a new run from turn --turn of RUN_ID (a checkpoint); prints the new run's id."""
    from quorum.client._common import MISSING

    value = MISSING if input_json is None else _json_arg(input_json, "--input-json")
    with connect(url, key) as client:
        run = client.runs.checkpoint(run_id, turn, input=value)
        click.echo(f"run {run.id} forked from {run_id} at turn {turn}", err=True)
        if not watch:
            click.echo(run.id)
            return
        code = watch_run(client, run.id, timeout)
    sys.exit(code)


@click.command("status")
@click.argument("run_id")
@click.option("--steps", "show_steps", is_flag=True, help="list the steps too")
@click.option("--json", "as_json", is_flag=True, help="print the run as JSON")
@connection_options
def status_command(run_id: str, show_steps: bool, as_json: bool, url: str, key: str | None) -> None:
    """Show a run: status, progress, lineage and output."""
    with connect(url, key) as client:
        run = client.runs.get(run_id)
        steps = list(client.runs.steps(run_id)) if show_steps else []
    if as_json:
        click.echo(_dump(run.raw))
        return
    rows: list[tuple[str, Any]] = [
        ("run", run.id),
        ("workflow", f"{run.workflow_id} (version {run.version})"),
        ("status", run.status),
        ("progress", f"{run.progress.steps_done}/{run.progress.steps_total} steps"),
    ]
    if run.termination_reason:
        rows.append(("termination", run.termination_reason))
    if run.error:
        rows.append(("error", json.dumps(run.error, ensure_ascii=False)))
    if run.original_run_id:
        rows.append(("forked from", f"{run.original_run_id} at turn {run.parent_turn_index}"))
    rows.append(("created", run.created_at.isoformat() if run.created_at else "-"))
    if run.completed_at:
        rows.append(("completed", run.completed_at.isoformat()))
    rows.append(("turns", len(run.io_pairs)))
    if run.comments:
        rows.append(("comments", len(run.comments)))
    rows.append(("output", json.dumps(run.output, ensure_ascii=False)))
    for name, value in rows:
        click.echo(f"{name:<12} {value}")
    if steps:
        click.echo("")
        click.echo(f"  {'step_id':<36} {'type':<12} {'status':<10} {'duration':>9}")
        for st in steps:
            took = f"{st.duration_ms} ms" if st.duration_ms is not None else "-"
            click.echo(f"  {st.step_id:<36} {st.block_type:<12} {st.status:<10} {took:>9}")


COMMANDS = (run_command, rerun_command, fork_command, status_command)
