"""``quorum runs list`` and ``quorum workflows list``: find runs and workflows from a terminal.

A table on stdout (newest first), or the page as JSON with ``--json``; when more entries are
older than the page, a hint with the ``--after`` cursor goes to stderr. Connection options and
errors as the other client commands (:mod:`quorum.remote`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from quorum.remote import connect, connection_options

RUN_STATUSES = (
    "not_started",
    "started",
    "running",
    "waiting_for_user_input",
    "paused",
    "completed",
    "failed",
    "cancelled",
    "aborted_looping_risk",
)
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class MomentType(click.ParamType):
    """An ISO 8601 time (without a zone: local time) or a duration ago: ``90s``, ``30m``, ``2h``,
    ``7d``."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        ago = _AGO.fullmatch(text)
        if ago:
            return datetime.now(UTC) - timedelta(**{_UNITS[ago.group(2)]: float(ago.group(1))})
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{text!r} is neither an ISO 8601 time nor a duration like 30m", param, ctx)
        return moment if moment.tzinfo is not None else moment.astimezone()


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{max((end - start).total_seconds(), 0):.1f} s"


def _failure(run: Any) -> str:
    if not run.termination_reason and not run.error:
        return ""
    error = run.error or {}
    where = f" in block {error['block_id']}" if error.get("block_id") else ""
    what = f": {error.get('type') or 'error'}: {error['message']}" if error.get("message") else ""
    return " ".join(f"{run.termination_reason or 'failed'}{where}{what}".split())[:120]


def _page_json(page: Any) -> str:
    body = {"data": [item.raw for item in page.data], "has_more": page.has_more}
    body["next_after"] = page.next_after
    return json.dumps(body, indent=2, ensure_ascii=False, default=str)


def _more(page: Any) -> None:
    if page.has_more:
        click.echo(f"(older entries: --after {page.next_after})", err=True)


@click.group("runs")
def runs_group() -> None:
    """Runs of your organization."""


@runs_group.command("list")
@click.option("--status", type=click.Choice(RUN_STATUSES), default=None)
@click.option("--workflow-id", default=None, help="runs of this workflow")
@click.option("--since", type=MomentType(), default=None, help="created at or after (30m, ISO)")
@click.option("--until", type=MomentType(), default=None, help="created before (2h, ISO)")
@click.option("--id", "id_prefix", default=None, metavar="PREFIX", help="run ids starting so")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--after", default=None, metavar="RUN_ID", help="the page after this run")
@click.option("--json", "as_json", is_flag=True, help="print the page as JSON")
@connection_options
def runs_list(
    status: str | None,
    workflow_id: str | None,
    since: datetime | None,
    until: datetime | None,
    id_prefix: str | None,
    limit: int,
    after: str | None,
    as_json: bool,
    url: str,
    key: str | None,
) -> None:
    """List runs, newest first: id, workflow, version, status, progress, failure."""
    with connect(url, key) as client:
        page = client.runs.list(
            status=status,
            workflow_id=workflow_id,
            created_from=since,
            created_to=until,
            id_prefix=id_prefix.lower() if id_prefix else None,
            limit=limit,
            after=after,
        )
        names = {} if as_json else {w.id: w.name for w in client.workflows.list(limit=200)}
    if as_json:
        click.echo(_page_json(page))
        return
    if not page.data:
        click.echo("no runs", err=True)
        return
    rows = [
        (
            run.id,
            names.get(run.workflow_id, run.workflow_id),
            str(run.version),
            run.status,
            f"{run.progress.steps_done}/{run.progress.steps_total}",
            _when(run.created_at),
            _seconds(run.created_at, run.completed_at),
            _failure(run),
        )
        for run in page.data
    ]
    headers = ("run", "workflow", "version", "status", "steps", "created (UTC)", "took", "failure")
    _table(headers, rows)
    _more(page)


@click.group("workflows")
def workflows_group() -> None:
    """Workflows of your organization."""


@workflows_group.command("list")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--after", default=None, metavar="WORKFLOW_ID", help="the page after this one")
@click.option("--json", "as_json", is_flag=True, help="print the page as JSON")
@connection_options
def workflows_list(limit: int, after: str | None, as_json: bool, url: str, key: str | None) -> None:
    """List workflows, newest first: id, name, latest version, dates."""
    with connect(url, key) as client:
        page = client.workflows.list(limit=limit, after=after)
    if as_json:
        click.echo(_page_json(page))
        return
    if not page.data:
        click.echo("no workflows", err=True)
        return
    rows = [
        (w.id, w.name, str(w.latest_version), _when(w.created_at), _when(w.updated_at))
        for w in page.data
    ]
    _table(("workflow", "name", "latest version", "created (UTC)", "draft updated (UTC)"), rows)
    _more(page)


COMMANDS = (runs_group, workflows_group)
