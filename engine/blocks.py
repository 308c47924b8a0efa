"""Block types: which handles each has, and how its config is checked.

The handles of a block follow from its type and config (a classifier's categories are
its output handles, a router's routes are); graph validation and scheduling both ask here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import FieldError

BLOCK_ID = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
HANDLE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
CONSENSUS_SIZES = (1, 3, 5, 7)
MODEL_TYPES = frozenset({"extract", "classifier", "split"})
BLOCK_TYPES = frozenset(
    {
        "start",
        "function",
        "extract",
        "classifier",
        "split",
        "router",
        "for_each",
        "human_input",
        "end",
    }
)
ANY = None  # input handles are whatever the edges name


@dataclass(frozen=True, kw_only=True)
class Handles:
    inputs: frozenset[str] | None  # None: any handle an edge names
    outputs: frozenset[str]


def handles_of(block_type: str, config: Mapping[str, Any]) -> Handles:
    # The config may not have been checked yet (validation asks for handles while it
    # collects errors), so every shape is tolerated here and nothing can raise.
    if block_type == "start":
        inputs_cfg = config.get("inputs")
        names = inputs_cfg if isinstance(inputs_cfg, Mapping) else {}
        return Handles(inputs=frozenset(), outputs=frozenset(str(k) for k in names))
    if block_type == "function":
        outputs = config.get("outputs")
        if not isinstance(outputs, list) or not outputs:
            outputs = ["output"]
        return Handles(inputs=ANY, outputs=frozenset(str(o) for o in outputs))
    if block_type == "extract":
        return Handles(inputs=frozenset({"document"}), outputs=frozenset({"output"}))
    if block_type == "classifier":
        return Handles(inputs=frozenset({"document"}), outputs=frozenset(_categories(config)))
    if block_type == "split":
        return Handles(inputs=frozenset({"document"}), outputs=frozenset(_parts(config)))
    if block_type == "router":
        return Handles(inputs=frozenset({"input"}), outputs=frozenset(router_handles(config)))
    if block_type == "for_each":
        return Handles(inputs=frozenset({"items"}), outputs=frozenset({"item", "results"}))
    if block_type == "human_input":
        return Handles(inputs=frozenset({"prompt"}), outputs=frozenset({"response"}))
    if block_type == "end":
        return Handles(inputs=ANY, outputs=frozenset())
    return Handles(inputs=frozenset(), outputs=frozenset())


def _categories(config: Mapping[str, Any]) -> list[str]:
    cats = config.get("categories") or []
    return [str(c) for c in cats] if isinstance(cats, list) else []


def _parts(config: Mapping[str, Any]) -> list[str]:
    parts = config.get("parts") or []
    names: list[str] = []
    if isinstance(parts, list):
        for p in parts:
            names.append(str(p.get("name")) if isinstance(p, Mapping) else str(p))
    return names


def router_handles(config: Mapping[str, Any]) -> list[str]:
    routes = config.get("routes")
    if not isinstance(routes, list):
        routes = []
    handles = [str(r.get("handle")) for r in routes if isinstance(r, Mapping)]
    if config.get("default"):
        handles.append(str(config["default"]))
    return handles


def n_consensus_of(config: Mapping[str, Any]) -> int:
    value = config.get("n_consensus", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def check_config(block_type: str, config: Mapping[str, Any]) -> list[FieldError]:
    """Config errors of one block, located relative to the block's ``config``."""
    errors: list[FieldError] = []

    def err(loc: tuple[str | int, ...], msg: str) -> None:
        errors.append(FieldError(loc=("config", *loc), msg=msg))

    if block_type not in ("start", "end", "for_each", "human_input"):
        retries = config.get("retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            err(("retries",), "must be an integer from 0 to 10")
        backoff = config.get("retry_backoff_s", 1.0)
        if (
            isinstance(backoff, bool)
            or not isinstance(backoff, int | float)
            or not 0 <= backoff <= 600
        ):
            err(("retry_backoff_s",), "must be a number of seconds from 0 to 600")
    if block_type in MODEL_TYPES and "n_consensus" in config:
        n = config["n_consensus"]
        # An int, not merely equal to one: 3.0 == 3, but the runtime reads only ints.
        if type(n) is not int or n not in CONSENSUS_SIZES:
            err(("n_consensus",), f"must be one of {list(CONSENSUS_SIZES)}")
    if block_type == "start":
        inputs = config.get("inputs", {})
        if not isinstance(inputs, Mapping):
            err(("inputs",), "must be an object mapping handle ids to {type}")
        else:
            for name, spec in inputs.items():
                if not HANDLE_ID.match(str(name)):
                    err(("inputs", name), "not a valid handle id")
                kind = spec.get("type") if isinstance(spec, Mapping) else None
                if kind not in ("json", "file"):
                    err(("inputs", name, "type"), "must be 'json' or 'file'")
    elif block_type == "function":
        if not isinstance(config.get("function"), str) or not config.get("function"):
            err(("function",), "a registered function name is required")
        if "params" in config and not isinstance(config["params"], Mapping):
            err(("params",), "must be an object")
        outputs = config.get("outputs")
        if outputs is not None and not (
            isinstance(outputs, list)
            and outputs
            and all(isinstance(o, str) and HANDLE_ID.match(o) for o in outputs)
        ):
            err(("outputs",), "must be a non-empty list of handle ids")
    elif block_type == "extract":
        schema = config.get("schema")
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            err(("schema",), "a JSON schema of type 'object' is required")
        else:
            _check_schema(schema, err)
    elif block_type == "classifier":
        _check_names(config.get("categories"), ("categories",), err)
    elif block_type == "split":
        parts = config.get("parts")
        _check_names(
            [p.get("name") if isinstance(p, Mapping) else p for p in parts]
            if isinstance(parts, list)
            else parts,
            ("parts",),
            err,
        )
    elif block_type == "router":
        errors.extend(_check_router(config))
    elif block_type == "for_each":
        body = config.get("body")
        if not isinstance(body, list) or not body or not all(isinstance(b, str) for b in body):
            err(("body",), "a non-empty list of block ids is required")
        collect = config.get("collect")
        if collect is not None and (not isinstance(body, list) or collect not in body):
            err(("collect",), "must name a block of the body")
    elif block_type == "human_input":
        schema = config.get("schema")
        if schema is not None and not isinstance(schema, Mapping):
            err(("schema",), "must be a JSON schema object")
        elif schema:
            _check_schema(schema, err)
    return errors


def _check_schema(schema: Mapping[str, Any], err: Any) -> None:
    from engine.schemas import schema_problems

    for problem in schema_problems(schema):
        err(("schema",), problem)


def _check_names(values: Any, loc: tuple[str | int, ...], err: Any) -> None:
    if not isinstance(values, list) or not values:
        err(loc, "a non-empty list of names is required")
        return
    seen: set[str] = set()
    for i, v in enumerate(values):
        if not isinstance(v, str) or not HANDLE_ID.match(v):
            err((*loc, i), "must be a handle id (letters, digits, _ . -)")
        elif v in seen:
            err((*loc, i), f"duplicate name {v!r}")
        else:
            seen.add(v)


def _check_router(config: Mapping[str, Any]) -> list[FieldError]:
    from engine.expressions.evaluate import compile_expression
    from engine.expressions.values import ExpressionError

    errors: list[FieldError] = []
    routes = config.get("routes")
    if not isinstance(routes, list) or not routes:
        return [FieldError(loc=("config", "routes"), msg="a non-empty list of routes is required")]
    seen: set[str] = set()
    for i, route in enumerate(routes):
        loc: tuple[str | int, ...] = ("config", "routes", i)
        if not isinstance(route, Mapping):
            errors.append(FieldError(loc=loc, msg="must be an object {handle, when}"))
            continue
        handle = route.get("handle")
        if not isinstance(handle, str) or not HANDLE_ID.match(handle) or handle in seen:
            errors.append(FieldError(loc=(*loc, "handle"), msg="a unique handle id is required"))
        else:
            seen.add(handle)
        when = route.get("when")
        if not isinstance(when, str):
            errors.append(FieldError(loc=(*loc, "when"), msg="an expression string is required"))
            continue
        try:
            compile_expression(when)
        except ExpressionError as exc:
            errors.append(FieldError(loc=(*loc, "when"), msg=str(exc)))
    default = config.get("default")
    if default is not None and (not isinstance(default, str) or default in seen):
        errors.append(
            FieldError(loc=("config", "default"), msg="must be a handle id not used by a route")
        )
    if config.get("mode", "first") not in ("first", "all"):
        errors.append(FieldError(loc=("config", "mode"), msg="must be 'first' or 'all'"))
    return errors
