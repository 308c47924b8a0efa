"""A small bounded, thread-safe memo for values that are pure functions of their key."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """Remembers up to ``size`` values; the least recently used goes first.

    Only for keys that change whenever the value would (an immutable row's id, a row id
    with its ``updated_at``): nothing here ever expires a value by time.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a memo holds at least one value")
        self.size = size
        self._values: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: K) -> V | None:
        with self._lock:
            if key not in self._values:
                return None
            self._values.move_to_end(key)
            return self._values[key]

    def get(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        # Made outside the lock: two threads may both make a missing value (it is a pure
        # function of the key, so either result will do), but none waits on another.
        value = make()
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
