"""api/gunicorn_conf.py: what each API worker does once its app is loaded."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from api import gunicorn_conf


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_loaded_worker_moves_its_objects_out_of_the_collector_s_way(unfrozen: None) -> None:
    """A full collection holds the GIL: walking the app's own objects was a p99 of its own."""
    loaded = [{"route": i} for i in range(1000)]  # long-lived, like the app's tables
    gunicorn_conf.post_worker_init(None)
    assert gc.get_freeze_count() >= len(loaded)
    assert not any(obj is loaded for obj in gc.get_objects()), "a collection skips them"
