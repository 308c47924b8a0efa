"""The ``quorum`` command: serve, work, migrate, manage keys, and run workflows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import click

import quorum.listing as listing
import quorum.remote as remote
from engine.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """Quorum: a distributed workflow engine. Configured by QUORUM_* environment variables."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (creates the schema on an empty database)."""
    from engine.db.migrate import upgrade

    upgrade(_settings().effective_database_url, revision)
    click.echo(f"database at {revision}")


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--org", "org", required=True, help="organization name (created if new)")
@click.option("--name", default=None, help="a label for the key")
def keys_create(org: str, name: str | None) -> None:
    """Create an API key; it is printed once, alone on the last line."""
    from engine.auth import issue_key
    from engine.db.session import Database

    database = Database(_settings())
    with database.transaction() as s:
        issued = issue_key(s, org, name=name)
    database.close()
    click.echo(
        f"organization {org} ({issued.organization_id}), key prefix {issued.prefix}", err=True
    )
    click.echo(issued.key)


@keys.command("revoke")
@click.argument("prefix")
def keys_revoke(prefix: str) -> None:
    """Revoke the key with this prefix (e.g. qk_0a1b2c3d4e5f)."""
    from engine.auth import revoke_key
    from engine.db.session import Database

    database = Database(_settings())
    with database.transaction() as s:
        done = revoke_key(s, prefix)
    database.close()
    if not done:
        raise click.ClickException(f"no active key with prefix {prefix}")
    click.echo(f"revoked {prefix}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=None, type=int, help="gunicorn workers (default 2)")
def api(host: str, port: int, workers: int | None) -> None:
    """Serve the HTTP API with gunicorn (uvicorn workers: event streams hold no thread)."""
    env = dict(os.environ, QUORUM_API_BIND=f"{host}:{port}")
    if workers:
        env["QUORUM_API_WORKERS"] = str(workers)
    app = "api.asgi:create_asgi_app()"
    args = [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", app]
    os.execvpe(args[0], args, env)


def _celery() -> Any:
    from quorum.logs import configure_logging
    from workers.celery_app import create_celery

    settings = _settings()
    configure_logging(settings)
    return create_celery(settings)


@main.command()
@click.option("--concurrency", "-c", default=None, type=int)
@click.option("--loglevel", default="INFO")
@click.option("--name", "-n", default=None, help="node name, e.g. w1@%h")
def worker(concurrency: int | None, loglevel: str, name: str | None) -> None:
    """Run a Celery worker (prefork pool)."""
    from workers import metrics_server

    app = _celery()
    settings: Settings = app.quorum_settings
    metrics_server.install(settings)
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        "--pool=prefork",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        "-E",
    ]
    if name:
        argv.append(f"--hostname={name}")
    if settings.is_embedded_broker:
        argv += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    code = _celery_main(app, argv)
    if code:
        raise SystemExit(code)


def _celery_main(app: Any, argv: list[str]) -> int:
    """``app.worker_main(argv)``, but returning the worker's exit code.

    celery's ``app.start()`` runs its command line with ``standalone_mode=False`` and drops
    what click returns: a worker that stopped on an "Unrecoverable error" (exit code 1)
    made ``quorum worker`` exit 0, and a restart-on-failure supervisor left it down.
    """
    from celery.bin.celery import celery

    celery.params[0].default = app
    try:
        return int(celery.main(args=argv, standalone_mode=False) or 0)
    finally:
        celery.params[0].default = None


@main.command()
@click.option("--node", default=None, help="worker node name (default celery@<this host>)")
@click.option("--timeout", default=5.0, show_default=True)
def ping(node: str | None, timeout: float) -> None:
    """Exit 0 if the worker node answers (a container health check)."""
    import socket

    from workers.celery_app import create_celery

    app = create_celery(_settings())
    target = node or f"celery@{socket.gethostname()}"
    replies = app.control.ping(destination=[target], timeout=timeout)
    app.close()
    if not replies:
        raise click.ClickException(f"{target} did not answer")
    click.echo(f"{target} ok")


@main.command()
def beat() -> None:
    """Run Celery beat: the outbox sweeper and the stale run reaper on a schedule."""
    app = _celery()
    settings: Settings = app.quorum_settings
    schedule = os.path.join(settings.data_dir, "celerybeat-schedule")
    os.makedirs(settings.data_dir, exist_ok=True)
    app.start(["beat", "--loglevel=INFO", f"--schedule={schedule}"])


@main.command()
@click.option("--older-than", default=None, type=float, help="seconds (default: settings)")
def sweep(older_than: float | None) -> None:
    """Publish again rows left pending or queued (the outbox), once."""
    from engine.db.session import Database
    from engine.outbox import sweep as do_sweep
    from workers.celery_app import create_celery
    from workers.dispatch import CeleryDispatcher

    settings = _settings()
    from workers.runtime import holder_alive

    count = do_sweep(
        Database(settings),
        CeleryDispatcher(create_celery(settings)),
        older_than_s=settings.outbox_after_s if older_than is None else older_than,
        lease_s=settings.lease_s,
        holder_alive=holder_alive,
    )
    click.echo(f"re-published {count} rows")


@main.command()
def reap() -> None:
    """Fail stale runs (no progress for longer than their limit), once."""
    from engine.db.session import Database
    from engine.reaper import reap as do_reap
    from workers.celery_app import create_celery
    from workers.dispatch import CeleryDispatcher

    settings = _settings()
    count = do_reap(
        Database(settings),
        CeleryDispatcher(create_celery(settings)),
        default_after_s=settings.stale_run_after_s,
    )
    click.echo(f"reaped {count} runs")


@main.command()
@click.option("--port", default=8000, show_default=True, type=int)
def dev(port: int) -> None:
    """Run the whole engine locally: migrate, then API, worker and beat together."""
    from engine.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.effective_database_url)
    exe = [sys.executable, "-m", "quorum.cli"]
    procs = [
        subprocess.Popen([*exe, "api", "--port", str(port), "--workers", "1"]),
        subprocess.Popen([*exe, "worker"]),
        subprocess.Popen([*exe, "beat"]),
    ]
    click.echo(
        f"Quorum on http://127.0.0.1:{port} (database {settings.effective_database_url}); "
        "Ctrl-C stops",
        err=True,
    )

    def stop(*_: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    stop()


@main.command()
@click.option(
    "--timeout", default=60.0, show_default=True, type=float, help="seconds to wait for the run"
)
def demo(timeout: float) -> None:
    """Run a consensus workflow end to end on the embedded default and print it.

    Needs no external service: SQLite and the filesystem broker in QUORUM_DATA_DIR (default
    ./.data) and the local provider. Starts a worker, serves the API on a free loopback port,
    creates a workflow with a router, a for_each and an extract with n_consensus 3, runs it
    and prints the run, its steps and the consensus likelihoods.
    """
    from quorum.demo import DemoError, run_demo

    try:
        run = run_demo(timeout_s=timeout)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    if run["status"] != "completed":
        raise click.ClickException(f"the demo run ended {run['status']}")


# The commands that talk to a running API (run, rerun, fork, status): quorum/remote.py;
# runs list and workflows list: quorum/listing.py.
for _command in (*remote.COMMANDS, *listing.COMMANDS):
    main.add_command(_command)


if __name__ == "__main__":
    main()
