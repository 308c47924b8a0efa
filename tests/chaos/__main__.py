"""``python -m tests.chaos``: the full chaos run; exit 1 unless nothing was lost or doubled."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from tests.chaos import ChaosConfig, run_chaos


def main(argv: list[str] | None = None) -> int:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("executions", "chain_runs", "consensus", "for_each_runs", "kills", "partitions"):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name)
        )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--timeout-s", type=float, default=defaults.timeout_s)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    config = ChaosConfig(
        executions=args.executions,
        chain_runs=args.chain_runs,
        consensus=args.consensus,
        for_each_runs=args.for_each_runs,
        kills=args.kills,
        partitions=args.partitions,
        seed=args.seed,
        timeout_s=args.timeout_s,
    )
    with tempfile.TemporaryDirectory(prefix="quorum-chaos-") as tmp:
        figures = run_chaos(config, Path(tmp))
    print(figures.details(), file=sys.stderr)
    print(figures.line())
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
