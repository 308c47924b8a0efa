"""A smaller chaos run on every CI run (``make chaos`` runs the full size)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import ChaosConfig, run_chaos

pytestmark = pytest.mark.integration


def test_small_chaos_loses_nothing_and_finishes_each_item_once(tmp_path: Path) -> None:
    figures = run_chaos(
        ChaosConfig(
            executions=60,
            runs=20,
            chain=3,
            kills=4,
            redis_restarts=1,
            pg_terminations=1,
            timeout_s=120,
        ),
        tmp_path,
    )
    print(figures.line())
    assert figures.lost == 0, figures.line()
    assert figures.duplicates_terminal == 0
    assert figures.completed == 80
    assert figures.kills == 4 and figures.redis_restarts == 1 and figures.pg_terminations == 1
