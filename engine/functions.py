"""The registry of Python callables that ``function`` blocks call by name.

Deployments register functions in code (``@registry.function("name")``) or through
``QUORUM_FUNCTIONS="name=package.module:attribute,..."``; workers and the API build the
same registry from the same settings.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

BlockFunction = Callable[..., Any]


class FunctionNotFound(LookupError):
    pass


class FunctionSpecError(ValueError):
    pass


class FunctionRegistry:
    def __init__(self) -> None:
        self._functions: dict[str, BlockFunction] = {}

    def register(self, name: str, fn: BlockFunction) -> BlockFunction:
        self._functions[name] = fn
        return fn

    def function(self, name: str | None = None) -> Callable[[BlockFunction], BlockFunction]:
        def decorator(fn: BlockFunction) -> BlockFunction:
            return self.register(name or fn.__name__, fn)

        return decorator

    def get(self, name: str) -> BlockFunction:
        try:
            return self._functions[name]
        except KeyError:
            raise FunctionNotFound(f"no function registered as {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._functions)

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def load_spec(self, spec: str) -> None:
        for item in (p.strip() for p in spec.split(",")):
            if not item:
                continue
            name, sep, target = item.partition("=")
            module_name, colon, attr = target.partition(":")
            if not sep or not colon or not name.strip() or not attr:
                raise FunctionSpecError(f"{item!r} is not of the form name=module:attribute")
            module = importlib.import_module(module_name.strip())
            obj: Any = module
            for part in attr.strip().split("."):
                obj = getattr(obj, part)
            if not callable(obj):
                raise FunctionSpecError(f"{target!r} is not callable")
            self.register(name.strip(), obj)


def call_function(fn: BlockFunction, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    """Call a block function with its inputs keyed by handle and its config ``params``.

    A function may take ``(inputs)`` or ``(inputs, params)``; the signature decides, so a
    ``TypeError`` raised inside the function is never mistaken for a calling convention.
    """
    if _takes_params(fn):
        return fn(dict(inputs), dict(params))
    return fn(dict(inputs))


def _takes_params(fn: BlockFunction) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional)


def builtin_registry() -> FunctionRegistry:
    """Functions every deployment has: useful for demos, smoke tests and benchmarks."""
    reg = FunctionRegistry()

    @reg.function("noop")
    def noop(inputs: dict[str, Any]) -> Any:
        return None

    @reg.function("identity")
    def identity(inputs: dict[str, Any]) -> Any:
        return inputs.get("value", inputs) if len(inputs) <= 1 else inputs

    @reg.function("sleep")
    def sleep(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        time.sleep(min(float(params.get("seconds", 0.1)), 60.0))
        return inputs.get("value")

    @reg.function("fail")
    def fail(inputs: dict[str, Any], params: dict[str, Any]) -> Any:
        raise RuntimeError(str(params.get("message", "this block always fails")))

    @reg.function("words")
    def words(inputs: dict[str, Any]) -> Any:
        text = str(next(iter(inputs.values()), ""))
        return text.split()

    return reg


def build_registry(spec: str) -> FunctionRegistry:
    reg = builtin_registry()
    reg.load_spec(spec)
    return reg
