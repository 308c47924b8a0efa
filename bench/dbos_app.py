"""The DBOS peer's application: no-op steps, the workflows the bench runs, a worker process.

A worker is one process of a DBOS application (``DBOS.launch()``) that dequeues from the
queue it is told to listen to, on the system database the bench made for it::

    python -m bench.dbos_app --url postgresql+psycopg://... --executor w1 --queue bench-units

Each worker gets its own executor id: DBOS recovers on launch the pending workflows of
its executor id, so two processes sharing one would recover each other's work. Queues are
registered (and their settings chosen) by the bench before the workers launch
(:mod:`bench.dbos_peer`); a worker only listens.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from dbos import DBOS, DBOSConfig

APP_NAME = "quorum-bench"
# A fixed version, so the bench's client and every worker agree without hashing the code.
APP_VERSION = "bench"
READY = "dbos worker ready"
# Workflow names, as the bench's client enqueues them.
UNIT = "bench.unit"
STEPS = "bench.steps"


@DBOS.step(name="bench.noop")
def noop() -> None:
    return None


@DBOS.workflow(name=UNIT)
def unit() -> None:
    """S1's one-step unit."""
    noop()


@DBOS.workflow(name=STEPS)
def steps(n: int) -> None:
    """S2's chain (n = 50) and S6's parents (n = 100 and 10,000): n no-op steps in a row."""
    for _ in range(n):
        noop()


def config(url: str, executor: str) -> DBOSConfig:
    # sys_db_pool_size 20 is DBOS's default; 10 measured about a tenth slower here.
    return {
        "name": APP_NAME,
        "system_database_url": url,
        "application_version": APP_VERSION,
        "executor_id": executor,
        "sys_db_pool_size": 20,
        "log_level": "INFO",
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.dbos_app")
    p.add_argument("--url", required=True, help="the DBOS system database")
    p.add_argument("--executor", required=True, help="this process's executor id")
    p.add_argument("--queue", required=True, help="the one queue this process dequeues from")
    args = p.parse_args(argv)
    stop = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    DBOS(config=config(args.url, args.executor))
    DBOS.listen_queues([args.queue])
    DBOS.launch()
    print(READY, flush=True)
    stop.wait()
    DBOS.destroy(workflow_completion_timeout_sec=5)


if __name__ == "__main__":
    main()
