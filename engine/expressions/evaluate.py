"""Compiled expressions and the interpreter that evaluates them against variables."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.expressions.functions import FUNCTIONS
from engine.expressions.parse import parse
from engine.expressions.values import (
    MAX_SEQUENCE_LENGTH,
    ExpressionError,
    checked_string,
    is_number,
    membership,
    type_name,
)

_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}

_COMPARISONS: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda a, b: membership(a, b)),
    ast.NotIn: ("not in", lambda a, b: not membership(a, b)),
}

_ARITHMETIC: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
}


@dataclass(frozen=True, kw_only=True)
class Expression:
    """A validated expression; constructing one checks the whitelist and limits."""

    source: str
    _tree: ast.Expression = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tree", parse(self.source))

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        try:
            return _Interpreter(variables).eval(self._tree.body)
        except ExpressionError:
            raise
        except RecursionError as exc:
            raise ExpressionError("expression nested too deeply to evaluate") from exc
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            # Backstop for odd values in variables; the interpreter reports known cases itself.
            raise ExpressionError(f"evaluation failed: {exc}") from exc


def compile_expression(source: str) -> Expression:
    return Expression(source=source)


def evaluate(source: str, variables: Mapping[str, Any]) -> Any:
    return compile_expression(source).evaluate(variables)


class _Interpreter:
    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.variables = variables

    def eval(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Attribute):
            return _field(self.eval(node.value), node.attr)
        if isinstance(node, ast.Subscript):
            return _item(self.eval(node.value), self.eval(node.slice))
        if isinstance(node, ast.BoolOp):
            return self._boolean(node)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.UnaryOp):
            return _unary(node.op, self.eval(node.operand))
        if isinstance(node, ast.BinOp):
            return _binary(node.op, self.eval(node.left), self.eval(node.right))
        if isinstance(node, ast.IfExp):
            return self.eval(node.body if self.eval(node.test) else node.orelse)
        if isinstance(node, ast.List):
            return [self.eval(element) for element in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.eval(element) for element in node.elts)
        if isinstance(node, ast.Dict):
            return self._dict(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        # Unreachable after validation; kept so a gap in the whitelist fails closed.
        raise ExpressionError(f"{type(node).__name__} is not allowed in an expression")

    def _name(self, name: str) -> Any:
        if name in _LITERALS:
            return _LITERALS[name]
        if name not in self.variables:
            raise ExpressionError(f"unknown name {name!r}")
        return self.variables[name]

    def _boolean(self, node: ast.BoolOp) -> Any:
        is_and = isinstance(node.op, ast.And)
        value: Any = None
        for operand in node.values:
            value = self.eval(operand)
            if bool(value) != is_and:
                return value
        return value

    def _compare(self, node: ast.Compare) -> Any:
        left = self.eval(node.left)
        result: Any = True
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.eval(comparator)
            symbol, apply = _COMPARISONS[type(op)]
            try:
                result = apply(left, right)
            except TypeError as exc:
                raise ExpressionError(
                    f"cannot compare {type_name(left)} and {type_name(right)} with '{symbol}'"
                ) from exc
            if not result:
                return result
            left = right
        return result

    def _dict(self, node: ast.Dict) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            assert key_node is not None  # refused at validation
            key = self.eval(key_node)
            try:
                result[key] = self.eval(value_node)
            except TypeError as exc:
                raise ExpressionError(f"{type_name(key)} cannot be an object key") from exc
        return result

    def _call(self, node: ast.Call) -> Any:
        assert isinstance(node.func, ast.Name)  # refused at validation otherwise
        function, _, _ = FUNCTIONS[node.func.id]
        args = [self.eval(arg) for arg in node.args]
        try:
            return function(*args)
        except TypeError as exc:
            raise ExpressionError(f"{node.func.id}() failed: {exc}") from exc


def _field(container: Any, name: str) -> Any:
    if container is None:
        return None
    if isinstance(container, Mapping):
        return container.get(name)
    raise ExpressionError(f"cannot read field {name!r} of {type_name(container)}")


def _item(container: Any, key: Any) -> Any:
    if container is None:
        return None
    if isinstance(container, Mapping):
        try:
            return container.get(key)
        except TypeError as exc:
            raise ExpressionError(f"{type_name(key)} cannot be an object key") from exc
    if isinstance(container, str | list | tuple):
        if not isinstance(key, int) or isinstance(key, bool):
            raise ExpressionError(
                f"{type_name(container)} index must be an integer, got {type_name(key)}"
            )
        return container[key] if -len(container) <= key < len(container) else None
    raise ExpressionError(f"cannot index into {type_name(container)}")


def _unary(op: ast.unaryop, value: Any) -> Any:
    if isinstance(op, ast.Not):
        return not value
    if not is_number(value):
        symbol = "-" if isinstance(op, ast.USub) else "+"
        raise ExpressionError(f"unary '{symbol}' needs a number, got {type_name(value)}")
    return -value if isinstance(op, ast.USub) else +value


def _binary(op: ast.operator, left: Any, right: Any) -> Any:
    symbol, apply = _ARITHMETIC[type(op)]
    if is_number(left) and is_number(right):
        try:
            return apply(left, right)
        except ZeroDivisionError as exc:
            raise ExpressionError(f"division by zero in '{symbol}'") from exc
        except OverflowError as exc:
            raise ExpressionError(f"number too large in '{symbol}'") from exc
    joinable = isinstance(op, ast.Add) and (
        (isinstance(left, str) and isinstance(right, str))
        or (isinstance(left, list) and isinstance(right, list))
        or (isinstance(left, tuple) and isinstance(right, tuple))
    )
    if not joinable:
        raise ExpressionError(
            f"'{symbol}' is not supported between {type_name(left)} and {type_name(right)}"
        )
    if isinstance(left, str):
        return checked_string(left + right)
    if len(left) + len(right) > MAX_SEQUENCE_LENGTH:
        raise ExpressionError(f"list result longer than {MAX_SEQUENCE_LENGTH} items")
    return left + right
