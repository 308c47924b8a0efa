"""Resource ids in ObjectId layout: 4-byte seconds, 5 random bytes, 3-byte counter."""

from __future__ import annotations

import itertools
import os
import re
import threading
import time

ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")

_lock = threading.Lock()
_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_process_random = os.urandom(5)
_pid = os.getpid()


def new_id() -> str:
    global _process_random, _pid
    with _lock:
        # The random part is per process, as in ObjectId; a forked worker must not share it.
        if os.getpid() != _pid:
            _pid = os.getpid()
            _process_random = os.urandom(5)
        count = next(_counter) & 0xFFFFFF
        rnd = _process_random
    return (int(time.time()).to_bytes(4, "big") + rnd + count.to_bytes(3, "big")).hex()


def is_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None
