"""router: activates the output handles whose expression holds (or its default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.blocks.base import HANDLE_ID, BlockKind, Err, Handles
from engine.execute import BlockFailed, Outcome, Toolbox
from engine.expressions.evaluate import compile_expression, evaluate
from engine.expressions.values import ExpressionError
from engine.graph.model import Block


class RouterBlock(BlockKind):
    type = "router"
    routes = True

    def handles(self, config: Mapping[str, Any]) -> Handles:
        return Handles(inputs=frozenset({"input"}), outputs=frozenset(router_handles(config)))

    def check(self, config: Mapping[str, Any], err: Err) -> None:
        routes = config.get("routes")
        if not isinstance(routes, list) or not routes:
            err(("routes",), "a non-empty list of routes is required")
            return
        seen: set[str] = set()
        for i, route in enumerate(routes):
            _check_route(route, ("routes", i), seen, err)
        default = config.get("default")
        if default is not None and (not isinstance(default, str) or default in seen):
            err(("default",), "must be a handle id not used by a route")
        if config.get("mode", "first") not in ("first", "all"):
            err(("mode",), "must be 'first' or 'all'")

    def execute(self, block: Block, inputs: Mapping[str, Any], tools: Toolbox) -> Outcome:
        value = inputs.get("input")
        variables = {"input": value}
        first_only = block.config.get("mode", "first") == "first"
        active: list[str] = []
        for route in block.config.get("routes") or []:
            try:
                hit = evaluate(str(route["when"]), variables)
            except ExpressionError as exc:
                message = f"route {route.get('handle')!r}: {exc}"
                raise BlockFailed("expression_error", message) from None
            if hit:
                active.append(str(route["handle"]))
                if first_only:
                    break
        if not active and block.config.get("default"):
            active.append(str(block.config["default"]))
        known = set(router_handles(block.config))
        return Outcome(outputs={h: value for h in active if h in known}, active=tuple(active))


def _check_route(route: Any, loc: tuple[str | int, ...], seen: set[str], err: Err) -> None:
    if not isinstance(route, Mapping):
        err(loc, "must be an object {handle, when}")
        return
    handle = route.get("handle")
    if not isinstance(handle, str) or not HANDLE_ID.match(handle) or handle in seen:
        err((*loc, "handle"), "a unique handle id is required")
    else:
        seen.add(handle)
    when = route.get("when")
    if not isinstance(when, str):
        err((*loc, "when"), "an expression string is required")
        return
    try:
        compile_expression(when)
    except ExpressionError as exc:
        err((*loc, "when"), str(exc))


def router_handles(config: Mapping[str, Any]) -> list[str]:
    routes = config.get("routes")
    if not isinstance(routes, list):
        routes = []
    handles = [str(r.get("handle")) for r in routes if isinstance(r, Mapping)]
    if config.get("default"):
        handles.append(str(config["default"]))
    return handles
