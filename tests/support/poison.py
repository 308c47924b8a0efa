"""A block function whose output no database column can hold (for the refusal tests).

Registered by the tests that need it through ``QUORUM_FUNCTIONS`` (see ``SPEC``); every
call is recorded as a line in ``$QUORUM_TEST_EFFECTS_DIR/poison-<tag>.log``, so a test
can tell how many times the block really ran.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support.functions import SPEC as BASE_SPEC

SPEC = f"{BASE_SPEC},poison=tests.support.poison:poison"

VALUES: dict[str, Any] = {
    "inf": float("inf"),
    "nan": float("nan"),
    "nul": "a\x00b",
}


def poison(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
    path = Path(os.environ["QUORUM_TEST_EFFECTS_DIR"]) / f"poison-{params['tag']}.log"
    with path.open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    return {"kept": inputs.get("value"), "bad": VALUES[str(params["value"])]}


def calls(effects_dir: str, tag: str) -> int:
    path = Path(effects_dir) / f"poison-{tag}.log"
    return len(path.read_text().splitlines()) if path.exists() else 0
