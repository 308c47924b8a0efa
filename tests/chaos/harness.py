"""The chaos run: two worker hosts, a private PostgreSQL and Redis, faults, thousands of units.

Host one is this network namespace: two workers, beat and the API (in this process).
Host two is a network namespace of its own (``ip netns``, a veth pair) with one worker
that reaches PostgreSQL and Redis only through that link. Both services are private to
the run, so the harness can restart them. Units are POSTed over HTTP while the faults
happen (tests/chaos/faults.py); then the run waits for every unit to end and reads the
outcome from the database (tests/chaos/measure.py).
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from engine.db.migrate import upgrade
from tests.chaos.config import ChaosConfig, Figures
from tests.chaos.faults import FaultInjector, taken_over
from tests.chaos.measure import Outcome, outcome, stuck, wait_until_done
from tests.chaos.units import (
    Sources,
    Submitter,
    chain_graph,
    extract_graph,
    for_each_graph,
    plan,
)
from tests.support.chaos_functions import DDL
from tests.support.chaos_functions import SPEC as RECORD_SPEC
from tests.support.fleet import Api, Fleet, fleet_env, running_fleet
from tests.support.functions import SPEC
from tests.support.netns import NetnsHost
from tests.support.pg_server import PostgresServer
from tests.support.redis_server import RedisServer


def run_chaos(config: ChaosConfig, workdir: Path) -> Figures:
    if config.partitions and os.geteuid() != 0:
        raise RuntimeError("the partitioned second host needs root (ip netns)")
    host2 = NetnsHost() if config.partitions else None
    gateway = (host2.gateway,) if host2 is not None else ()
    redis = pg = None
    try:
        redis = RedisServer(bind=("127.0.0.1", *gateway))
        pg = PostgresServer(
            listen=("127.0.0.1", *gateway), trusted=(host2.network,) if host2 else ()
        )
        db_url = pg.create_database("quorum_chaos")
        upgrade(db_url)
        engine = create_engine(db_url)
        with engine.begin() as conn:
            conn.execute(text(DDL))
        engine.dispose()
        env = fleet_env(
            db_url,
            redis.url,
            workdir,
            QUORUM_FUNCTIONS=f"{SPEC},{RECORD_SPEC}",
            QUORUM_OUTBOX_AFTER_S="5",
            QUORUM_LEASE_S=str(config.lease_s),
            QUORUM_RATE_LIMIT_PER_MINUTE="0",
        )
        with running_fleet(env, workers=0) as fleet:
            fleet.start_worker("w1", concurrency=2)
            fleet.start_worker("w2", concurrency=2)
            if host2 is not None:
                fleet.start_worker(
                    "h2",
                    concurrency=2,
                    prefix=host2.prefix,
                    extra_env={
                        "QUORUM_DATABASE_URL": pg.url(host2.gateway, "quorum_chaos"),
                        "QUORUM_BROKER_URL": redis.url_at(host2.gateway),
                    },
                )
            fleet.start_beat()
            fleet.serve()
            return _drive(config, fleet, redis, pg, db_url, host2)
    finally:
        if pg is not None:
            pg.close()
        if redis is not None:
            redis.stop()
        if host2 is not None:
            host2.close()


def _sources(api: Api, config: ChaosConfig) -> Sources:
    """The workflows and source runs the units point at, made before any fault."""
    source = api.create_workflow(for_each_graph("source"), name="execution-source")
    items = [f"e{i}" for i in range(config.executions)]
    execution_run = api.wait_run(api.start_run(source["id"], {"x": items})["id"], timeout=600)
    assert execution_run["status"] == "completed", execution_run["status"]
    api.http.patch(
        f"/v1/workflows/{source['id']}/draft/blocks/f",
        json={
            "config": {"function": "record", "params": {"block": "exec", "sleep": config.work_s}}
        },
    ).raise_for_status()
    extract = api.create_workflow(extract_graph(), name="consensus-source")
    doc = "invoice_number: INV-7\ntotal: 12.5"
    consensus_run = api.wait_run(api.start_run(extract["id"], {"doc": doc})["id"])
    assert consensus_run["status"] == "completed", consensus_run["status"]
    return Sources(
        chain_workflow=api.create_workflow(chain_graph(config.chain, config.work_s), name="chain")[
            "id"
        ],
        for_each_workflow=api.create_workflow(
            for_each_graph("item", config.work_s), name="for-each"
        )["id"],
        execution_run=execution_run["id"],
        consensus_run=consensus_run["id"],
    )


def _drive(
    config: ChaosConfig,
    fleet: Fleet,
    redis: RedisServer,
    pg: PostgresServer,
    db_url: str,
    host2: NetnsHost | None,
) -> Figures:
    rng = random.Random(config.seed)
    key = fleet.new_key("chaos")
    api = Api(fleet.base_url, key)
    try:
        sources = _sources(api, config)
    finally:
        api.close()
    units = plan(sources, config, rng)
    faults = FaultInjector(
        config=config, rng=rng, fleet=fleet, redis=redis, pg=pg, db_url=db_url, host2=host2
    )
    t0 = time.monotonic()
    deadline = t0 + config.timeout_s
    submitter = Submitter(
        base_url=fleet.base_url, api_key=key, clients=config.clients, rate=config.post_rate
    )
    faults.start(pg=config.pg_during_posts)
    engine = create_engine(db_url, pool_pre_ping=True)
    try:
        submitter.submit(units, deadline=deadline)
        if not config.pg_during_posts:
            faults.start_pg()
        wait_until_done(engine, units, submitter.ids, deadline=deadline)
        faults.finish(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        faults.stop()
    pg.wait_ready()
    # The faults are over: a last look for units still finishing, without interference.
    wait_until_done(engine, units, submitter.ids, deadline=time.monotonic() + 120)
    found = outcome(
        engine,
        units,
        submitter.ids,
        {"execution": sources.execution_run, "consensus": sources.consensus_run},
    )
    for line in stuck(engine, units, submitter.ids)[:50]:
        print(f"chaos: not finished: {line}", file=sys.stderr)
    engine.dispose()
    print(f"chaos answers: {dict(submitter.statuses)}", file=sys.stderr)
    return _figures(found, faults, fleet, submitter, elapsed_s=time.monotonic() - t0)


def _figures(
    found: Outcome, faults: FaultInjector, fleet: Fleet, submitter: Submitter, *, elapsed_s: float
) -> Figures:
    return Figures(
        units=found.completed + found.errored + found.lost,
        lost=found.lost,
        duplicates_terminal=found.duplicates_terminal,
        duplicates_by_key=found.duplicates_by_key,
        reexecuted=found.reexecuted,
        kills=faults.counts["kills"],
        redis_restarts=faults.counts["redis_restarts"],
        pg_restarts=faults.counts["pg_restarts"],
        partitions=faults.counts["partitions"],
        workers_exited=_exited(fleet),
        completed=found.completed,
        errored=found.errored,
        taken_over=taken_over(faults.db_url, faults.cut_rows),
        posts=submitter.posts,
        elapsed_s=elapsed_s,
    )


def _exited(fleet: Fleet) -> int:
    """Fleet processes (workers, beat) that ended by themselves: the harness kills only
    pool processes, which their worker replaces."""
    return sum(1 for w in fleet.workers if w.proc.poll() is not None)
