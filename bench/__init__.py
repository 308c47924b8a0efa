"""Benchmarks: Quorum against raw Celery on real PostgreSQL, Redis and worker processes.

``python -m bench`` (``make bench``) runs every scenario interleaved with its baseline
(engine, baseline, engine, baseline, ...) in one invocation, prints a table of medians and
ratios and writes ``bench/results.json`` with every raw sample. Nothing here asserts a
timing: the test suite never depends on how fast this machine is.

Modules: :mod:`bench.env` (the private world: a fresh database, a private Redis, processes),
:mod:`bench.baseline` (the raw Celery app), :mod:`bench.pk_app` (the S5 baseline server),
:mod:`bench.inline` (the orchestrator in-process, synthetic runs), :mod:`bench.workers`
(S1, S2, S3, S9), :mod:`bench.inproc` (S4, S8), :mod:`bench.serving` (S5, S6, S7),
:mod:`bench.load` (the HTTP load generator), :mod:`bench.report` (table and JSON).
"""
