"""The run wing: everything that changes a run under its row lock.

paths (step paths, scopes, the scheduler's value types) <- scope (creating and reading a
run's steps) <- foreach (iterations) <- scheduler (propagation, joins, loops) <- start
(a run's first steps) <- ended (a turn or run ends; evaluation runs start) <- control
(pause, resume, cancel) and turns (answers open turns). Nothing here imports upwards.
"""
