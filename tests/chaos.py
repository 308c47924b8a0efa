"""Chaos: at-least-once delivery, exactly-once outcomes, under kills and outages.

Submits block executions and multi-step runs to 2 worker processes while a harness
SIGKILLs worker pool children at random, restarts Redis (losing every queued message)
and terminates the workers' PostgreSQL backends. Then checks that every item ended
(lost=0) and that none has two terminal records, and prints one figure line.

``python -m tests.chaos`` (``make chaos``) runs the full size; the integration suite
runs a smaller one (tests/integration/test_chaos.py).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from engine.db.migrate import upgrade
from engine.db.models import BlockExecution, Run, Step
from tests.support.fleet import Api, fleet_env, running_fleet
from tests.support.redis_server import RedisServer
from tests.support.services import require_postgres


@dataclass(frozen=True, kw_only=True)
class ChaosConfig:
    executions: int = 500
    runs: int = 100
    chain: int = 5
    kills: int = 10
    redis_restarts: int = 1
    pg_terminations: int = 1
    timeout_s: float = 300.0
    seed: int = 7


@dataclass(frozen=True, kw_only=True)
class Figures:
    submitted: int
    steps: int
    completed: int
    errored: int
    lost: int
    duplicates_terminal: int
    duplicate_side_effects: int
    kills: int
    redis_restarts: int
    pg_terminations: int
    elapsed_s: float

    def line(self) -> str:
        return (
            f"chaos: submitted={self.submitted} steps={self.steps} completed={self.completed} "
            f"errored={self.errored} lost={self.lost} "
            f"duplicates_terminal={self.duplicates_terminal} "
            f"duplicates={self.duplicate_side_effects} kills={self.kills} "
            f"redis_restarts={self.redis_restarts} pg_terminations={self.pg_terminations} "
            f"elapsed={self.elapsed_s:.1f}s"
        )


GRAPH_TEMPLATE = "effect"


def _chain_graph(n: int, tag: str) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}}
    ]
    edges: list[dict[str, str]] = []
    prev, handle = "start", "x"
    for i in range(n):
        bid = f"s{i}"
        blocks.append(
            {
                "id": bid,
                "type": "function",
                "config": {"function": "effect", "params": {"tag": f"{tag}-{bid}"}},
            }
        )
        edges.append(
            {"source": prev, "source_handle": handle, "target": bid, "target_handle": "value"}
        )
        prev, handle = bid, "output"
    blocks.append({"id": "end", "type": "end"})
    edges.append({"source": prev, "source_handle": handle, "target": "end", "target_handle": "y"})
    return {"blocks": blocks, "edges": edges}


def run_chaos(config: ChaosConfig, workdir: Path) -> Figures:
    rng = random.Random(config.seed)
    admin = require_postgres()
    name = f"quorum_chaos_{uuid.uuid4().hex[:8]}"
    admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    redis_server = RedisServer()
    try:
        upgrade(db_url)
        # One key submits everything: the per-key rate limit is not under test here.
        env = fleet_env(
            db_url,
            redis_server.url,
            workdir,
            QUORUM_OUTBOX_AFTER_S="2",
            QUORUM_LEASE_S="30",
            QUORUM_RATE_LIMIT_PER_MINUTE="0",
        )
        with running_fleet(env, workers=2) as fleet:
            fleet.start_beat()
            fleet.serve()
            api = Api(fleet.base_url, fleet.new_key("chaos"))
            try:
                return _drive(config, rng, fleet, api, admin_engine, name, redis_server, workdir)
            finally:
                api.close()
    finally:
        redis_server.stop()
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


def _drive(
    config: ChaosConfig,
    rng: random.Random,
    fleet: Any,
    api: Api,
    admin_engine: Any,
    db_name: str,
    redis_server: RedisServer,
    workdir: Path,
) -> Figures:
    t0 = time.monotonic()
    # A source run whose single block the executions re-run.
    base = api.create_workflow(_chain_graph(1, "base"))
    source = api.wait_run(api.start_run(base["id"], {"x": -1})["id"])
    assert source["status"] == "completed", source
    chain = api.create_workflow(_chain_graph(config.chain, "chain"))
    api.post(
        f"/v1/workflows/{base['id']}/draft/blocks/s0",
        {"config": {"function": "effect", "params": {"tag": "exec"}}},
    )
    stop = threading.Event()
    counts: Counter[str] = Counter()
    faults = threading.Thread(
        target=_inject,
        args=(config, rng, fleet, admin_engine, db_name, redis_server, stop, counts),
        daemon=True,
    )
    faults.start()
    execution_ids: list[str] = []
    run_ids: list[str] = []
    plan = ["e"] * config.executions + ["r"] * config.runs
    rng.shuffle(plan)
    for i, kind in enumerate(plan):
        if kind == "e":
            body = {"run_id": source["id"], "block_id": "s0", "check_eligibility": False}
            execution_ids.append(_submit(api, "/v1/workflows/blocks/executions", body))
        else:
            body = {"workflow_id": chain["id"], "inputs": {"x": i}}
            run_ids.append(_submit(api, "/v1/workflows/runs", body))
    # The harness's own connections are terminated with the workers' ones: pre-ping, and
    # retry a poll that was cut.
    engine = create_engine(fleet.env["QUORUM_DATABASE_URL"], pool_pre_ping=True)
    deadline = time.monotonic() + config.timeout_s
    try:
        while True:
            try:
                open_execs, open_runs = _open_counts(engine, execution_ids, run_ids)
            except OperationalError:
                time.sleep(0.2)
                continue
            if (open_execs == 0 and open_runs == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        stop.set()
        faults.join(timeout=30)
        with engine.connect() as conn:
            ex_states = Counter(
                dict(
                    conn.execute(
                        select(BlockExecution.state, func.count())
                        .where(BlockExecution.id.in_(execution_ids))
                        .group_by(BlockExecution.state)
                    ).all()
                )
            )
            run_states = Counter(
                dict(
                    conn.execute(
                        select(Run.status, func.count())
                        .where(Run.id.in_(run_ids))
                        .group_by(Run.status)
                    ).all()
                )
            )
            step_count = conn.scalar(
                select(func.count()).select_from(Step).where(Step.run_id.in_(run_ids))
            )
            dup_steps = conn.scalar(
                select(func.count()).select_from(
                    select(Step.run_id, Step.step_id)
                    .where(Step.run_id.in_(run_ids))
                    .group_by(Step.run_id, Step.step_id)
                    .having(func.count() > 1)
                    .subquery()
                )
            )
    finally:
        engine.dispose()
    stuck = _stuck(fleet.env["QUORUM_DATABASE_URL"], execution_ids, run_ids)
    for line in stuck:
        print(f"chaos: not finished: {line}", file=sys.stderr)
    completed = ex_states["completed"] + run_states["completed"]
    errored = ex_states["error"] + run_states["failed"]
    submitted = len(execution_ids) + len(run_ids)
    return Figures(
        submitted=submitted,
        steps=int(step_count or 0),
        completed=completed,
        errored=errored,
        lost=submitted - completed - errored,
        duplicates_terminal=int(dup_steps or 0),
        # Side effects beyond one per block: executions that ran again after a kill.
        duplicate_side_effects=_effect_lines(workdir)
        - (len(execution_ids) + 1 + len(run_ids) * config.chain),
        kills=counts["kills"],
        redis_restarts=counts["redis_restarts"],
        pg_terminations=counts["pg_terminations"],
        elapsed_s=time.monotonic() - t0,
    )


def _submit(api: Api, path: str, body: dict[str, Any]) -> str:
    """POST like a careful client: retry a 503 with the same Idempotency-Key."""
    key = uuid.uuid4().hex
    for attempt in range(20):
        r = api.post(path, body, headers={"Idempotency-Key": key})
        if r.status_code != 503:
            assert r.status_code == 202, r.text
            return str(r.json()["id"])
        time.sleep(0.1 * (attempt + 1))
    raise AssertionError(f"{path} kept answering 503")


def _submit(api: Api, path: str, body: dict[str, Any]) -> str:
    """POST like a careful client: retry a 503 with the same Idempotency-Key."""
    key = uuid.uuid4().hex
    for attempt in range(20):
        r = api.post(path, body, headers={"Idempotency-Key": key})
        if r.status_code != 503:
            assert r.status_code == 202, r.text
            return str(r.json()["id"])
        time.sleep(0.1 * (attempt + 1))
    raise AssertionError(f"{path} kept answering 503")


def _stuck(url: str, execution_ids: list[str], run_ids: list[str]) -> list[str]:
    """What the unfinished items look like, to tell a lost message from a stuck claim."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    BlockExecution.id,
                    BlockExecution.state,
                    BlockExecution.attempt,
                    BlockExecution.worker,
                    BlockExecution.queued_at,
                    BlockExecution.started_at,
                ).where(
                    BlockExecution.id.in_(execution_ids),
                    BlockExecution.state.in_(["pending", "queued", "running"]),
                )
            ).all()
            steps = conn.execute(
                select(
                    Step.id,
                    Step.step_id,
                    Step.state,
                    Step.attempt,
                    Step.worker,
                    Step.queued_at,
                    Step.started_at,
                )
                .join(Run, Run.id == Step.run_id)
                .where(Run.id.in_(run_ids), Step.state.in_(["pending", "queued", "running"]))
            ).all()
    finally:
        engine.dispose()
    return [f"execution {tuple(r)}" for r in rows] + [f"step {tuple(r)}" for r in steps]


def _open_counts(engine: Any, execution_ids: list[str], run_ids: list[str]) -> tuple[int, int]:
    with engine.connect() as conn:
        execs = conn.scalar(
            select(func.count())
            .select_from(BlockExecution)
            .where(
                BlockExecution.id.in_(execution_ids),
                BlockExecution.state.in_(["pending", "queued", "running"]),
            )
        )
        runs = conn.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.id.in_(run_ids), Run.status.in_(["not_started", "started", "running"]))
        )
    return int(execs or 0), int(runs or 0)


def _effect_lines(workdir: Path) -> int:
    return sum(len(log.read_text().splitlines()) for log in workdir.glob("*.log"))


def _inject(
    config: ChaosConfig,
    rng: random.Random,
    fleet: Any,
    admin_engine: Any,
    db_name: str,
    redis_server: RedisServer,
    stop: threading.Event,
    counts: Counter[str],
) -> None:
    events = (
        ["kill"] * config.kills
        + ["redis"] * config.redis_restarts
        + ["pg"] * config.pg_terminations
    )
    rng.shuffle(events)
    for event in events:
        if stop.wait(rng.uniform(0.3, 1.2)):
            return
        if event == "kill":
            # A pool child may be between restarts: look again for a moment.
            for _ in range(40):
                children = [
                    pid for w in fleet.workers if w.name.startswith("w") for pid in w.child_pids()
                ]
                if children:
                    os.kill(rng.choice(children), signal.SIGKILL)
                    counts["kills"] += 1
                    break
                time.sleep(0.05)
        elif event == "redis":
            redis_server.restart()
            counts["redis_restarts"] += 1
        else:
            with admin_engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": db_name},
                )
            counts["pg_terminations"] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=ChaosConfig.executions)
    parser.add_argument("--runs", type=int, default=ChaosConfig.runs)
    parser.add_argument("--kills", type=int, default=ChaosConfig.kills)
    parser.add_argument("--seed", type=int, default=ChaosConfig.seed)
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="quorum-chaos-") as tmp:
        figures = run_chaos(
            ChaosConfig(
                executions=args.executions, runs=args.runs, kills=args.kills, seed=args.seed
            ),
            Path(tmp),
        )
    print(figures.line())
    return 0 if figures.lost == 0 and figures.duplicates_terminal == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
