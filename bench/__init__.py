"""Benchmarks: Quorum against raw Celery, and against DBOS as a peer, on real PostgreSQL,
Redis and worker processes.

``python -m bench`` (``make bench``) runs every scenario interleaved with its baseline and
its peer (engine, baseline, peer, engine, baseline, peer, ...) in one invocation, prints a
table of medians and ratios and writes ``bench/results.json`` with every raw sample.
Nothing here asserts a timing: the test suite never depends on how fast this machine is.

Modules: :mod:`bench.env` (the private world: fresh databases, a private Redis, processes),
:mod:`bench.baseline` (the raw Celery app), :mod:`bench.pk_app` (the S5 baseline server),
:mod:`bench.inline` (the orchestrator in-process, synthetic runs: the engine internals the
bench calls are imported there and in the scenario modules' headers), :mod:`bench.units`
(S1, S1-API), :mod:`bench.workers` (S2, S3), :mod:`bench.memory` (S9), :mod:`bench.inproc`
(S4, S8), :mod:`bench.serving` (S5, S7), :mod:`bench.forks` (S6), :mod:`bench.dbos_peer`
and :mod:`bench.dbos_app` (the DBOS peer), :mod:`bench.load` (the HTTP load generator),
:mod:`bench.report` (table and JSON).
"""
