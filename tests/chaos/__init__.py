"""Chaos: at least once, never twice, under worker kills, Redis and PostgreSQL restarts and
a worker host cut off from both.

``python -m tests.chaos`` (``make chaos``) runs the full size and prints one summary line;
the integration suite runs a small one (tests/integration/test_chaos.py).
"""

from __future__ import annotations

from tests.chaos.config import ChaosConfig, Figures
from tests.chaos.harness import run_chaos

__all__ = ["ChaosConfig", "Figures", "run_chaos"]
