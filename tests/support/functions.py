"""Block functions that integration tests register in worker processes via QUORUM_FUNCTIONS."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

SPEC = ",".join(
    f"{name}=tests.support.functions:{name}"
    for name in (
        "double",
        "add",
        "explode",
        "effect",
        "slow",
        "count_to",
        "inc",
        "flaky",
        "blob",
        "carry",
        "as_set",
    )
)


def double(inputs: dict[str, Any]) -> Any:
    return inputs["value"] * 2


def add(inputs: dict[str, Any]) -> Any:
    return sum(v for v in inputs.values() if isinstance(v, int | float))


def explode(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
    raise ValueError(params.get("message", "exploded on purpose"))


def inc(inputs: dict[str, Any]) -> Any:
    value = inputs.get("value")
    return (value if isinstance(value, int) else 0) + 1


def count_to(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
    return list(range(int(inputs.get("value") or params.get("n", 0))))


def effect(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
    """Record one side effect per execution (to count duplicates), then pass the value on."""
    directory = Path(os.environ["QUORUM_TEST_EFFECTS_DIR"])
    tag = str(params.get("tag", "effect"))
    key = str(inputs.get("value"))
    with (directory / f"{tag}.log").open("a") as fh:
        fh.write(f"{key} {os.getpid()}\n")
    delay = float(params.get("sleep", 0))
    if delay:
        time.sleep(delay)
    return inputs.get("value")


def slow(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
    marker = params.get("marker")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(float(params.get("seconds", 2)))
    return inputs.get("value")


def flaky(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
    """Fail the first ``fail_times`` calls for a tag (counted across processes), then pass."""
    path = Path(os.environ["QUORUM_TEST_EFFECTS_DIR"]) / f"flaky-{params['tag']}.log"
    with path.open("a+") as fh:
        fh.seek(0)
        calls = len(fh.read().splitlines())
        fh.write(f"{os.getpid()}\n")
    if calls < int(params.get("fail_times", 1)):
        raise ConnectionError(f"flaky failure {calls + 1}")
    return inputs.get("value")


def blob(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
    """An output of ``bytes`` characters: a step that stores far too much."""
    return "x" * int(params.get("bytes", 3_000_000))


def carry(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
    """``{"n": n + 1, "pad": ...}`` from ``n`` or from such an object: a loop's payload."""
    value = inputs.get("value")
    n = value.get("n", 0) if isinstance(value, dict) else int(value or 0)
    return {"n": n + 1, "pad": "y" * int(params.get("pad", 100_000))}


def as_set(inputs: dict[str, Any]) -> Any:
    """A value that is not JSON, as user code may return one."""
    return {"seen": {inputs.get("value"), "other"}}
