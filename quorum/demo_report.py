"""What ``quorum demo`` prints about the finished run: the run, its IO pairs, every step,
the consensus likelihoods and the model usage."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

Say = Callable[[str], None]
Row = Mapping[str, Any]


def _fmt_value(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 3] + "..."


def _seconds_between(start: Any, end: Any) -> str:
    try:
        first = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        last = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        return "an unknown time"
    return f"{(last - first).total_seconds():.1f} s"


def _fmt_ms(value: Any) -> str:
    return "-" if value is None else f"{value} ms"


def _likelihood_lines(likelihoods: Any, value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(likelihoods, Mapping):
        values = value if isinstance(value, Mapping) else {}
        for name, sub in likelihoods.items():
            yield from _likelihood_lines(sub, values.get(name), f"{prefix}{name}.")
    elif isinstance(likelihoods, list):
        items = value if isinstance(value, list) else []
        for i, sub in enumerate(likelihoods):
            yield from _likelihood_lines(sub, items[i] if i < len(items) else None, f"{prefix}{i}.")
    else:
        name = prefix.rstrip(".") or "(value)"
        yield f"{name:<18} {_fmt_value(value, 28):<30} likelihood {float(likelihoods):.2f}"


def print_summary(
    run: Row,
    steps: Sequence[Row],
    *,
    elapsed_s: float,
    say: Say,
) -> None:
    _print_run(run, elapsed_s, say)
    _print_io_pairs(run, say)
    _print_steps(steps, say)
    _print_consensus(steps, say)
    _print_usage(run, say)


def _print_run(run: Row, elapsed_s: float, say: Say) -> None:
    say("")
    reason = run.get("termination_reason") or "none"
    say(f"Run {run['id']}: status {run['status']} (termination_reason: {reason})")
    took = _seconds_between(run.get("created_at"), run.get("completed_at"))
    say(f"  took {took} ({elapsed_s:.1f} s with the worker's start-up)")
    say(f"  progress {run['progress']}")
    if run.get("error"):
        say(f"  error: {_fmt_value(run['error'], 200)}")


def _print_io_pairs(run: Row, say: Say) -> None:
    say("")
    say("IO pairs:")
    for pair in run.get("io_pairs") or []:
        say(f"  turn {pair['turn_index']}")
        say(f"    input   {_fmt_value(pair['input'], 100)}")
        output = json.dumps(pair["output"], indent=2, ensure_ascii=False)
        say("    output  " + output.replace("\n", "\n" + " " * 12))


def _print_steps(steps: Sequence[Row], say: Say) -> None:
    say("")
    say(f"Steps ({len(steps)}):")
    width = max([len(s["step_id"]) for s in steps] + [7])
    say(f"  {'step_id':<{width}}  {'type':<10} {'status':<10} {'duration':>9}  note")
    for s in steps:
        life = s["lifecycle"]
        say(
            f"  {s['step_id']:<{width}}  {s['block_type']:<10} {life['status']:<10} "
            f"{_fmt_ms(s.get('duration_ms')):>9}  {_note(s)}".rstrip()
        )


def _note(step: Row) -> str:
    life = step["lifecycle"]
    if life["status"] == "skipped":
        return f"({life.get('reason')})"
    if life["status"] == "error":
        return _fmt_value(life.get("message"), 80)
    if step.get("active_output_handles") and step["block_type"] in ("router", "classifier"):
        return "-> " + ", ".join(step["active_output_handles"])
    if step.get("n_consensus", 1) > 1:
        return f"n_consensus {step['n_consensus']}"
    return ""


def _print_consensus(steps: Sequence[Row], say: Say) -> None:
    say("")
    say("Consensus likelihoods (share of the attempts that agree on each field):")
    with_consensus = [s for s in steps if s.get("consensus")]
    if not with_consensus:
        say("  (no step ran with consensus)")
    for s in with_consensus:
        c = s["consensus"]
        say(f"  {s['step_id']}: {c['succeeded']} of {c['attempts']} attempts answered")
        for line in _likelihood_lines(c["likelihoods"], c["value"]):
            say(f"    {line}")
    say(
        "  Note: the local provider is deterministic, so its attempts always agree and every\n"
        "  likelihood is 1.00; with a sampling model (QUORUM_PROVIDER=openai) they can disagree."
    )


def _print_usage(run: Row, say: Say) -> None:
    usage = run.get("token_usage") or {}
    latency = run.get("latency_stats") or {}
    say("")
    say(
        f"Model calls: {latency.get('total_calls', 0)} "
        f"(avg {latency.get('avg_latency_ms', 0)} ms), tokens {usage.get('total', 0)} "
        f"(prompt {usage.get('prompt', 0)}, completion {usage.get('completion', 0)}), "
        f"by provider {sorted((usage.get('by_provider') or {}).keys())}"
    )
