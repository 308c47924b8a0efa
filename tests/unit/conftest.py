"""Fixtures shared by the unit tests of the engine's wings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import Harness, new_harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    yield from new_harness(tmp_path)
