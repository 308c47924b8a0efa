"""A small, safe expression language for ``router`` conditions.

The source is parsed with :func:`ast.parse` in ``eval`` mode and the tree is interpreted here,
node by node, against a whitelist; nothing is ever handed to Python's ``eval``, ``exec`` or
``compile``. Everything outside the whitelist raises :class:`ExpressionError` when the
expression is compiled, so a bad router is refused when the graph is validated.

Allowed: str/int/float/bool/None constants and the JSON-style names ``true``, ``false`` and
``null`` (these win over variables of the same name); variable names; ``a.b`` and ``a["b"]``
/ ``a[0]`` as forgiving lookups (a missing key or index, or any lookup on null, gives null);
comparisons including ``in`` / ``not in`` and chains; ``and`` / ``or`` / ``not`` with Python's
short-circuit semantics; ``+ - * / // %`` and unary ``-`` / ``+`` on numbers (bools are not
numbers here), ``+`` also joining two strings, two lists or two tuples; list, tuple and dict
literals; ``a if c else b``; and calls to the functions in :data:`FUNCTIONS` with positional
arguments. Identifiers starting or ending with ``__`` are refused outright.

String functions (lower, upper, strip) pass null through and the predicates (startswith,
endswith, contains) are false on null, so conditions on absent fields stay forgiving; other
type mismatches raise :class:`ExpressionError` with a message, never a bare ``TypeError``.

Limits keep a hostile expression cheap: the source is at most 2,000 characters, the tree at
most 500 expression nodes nested at most 100 deep, strings built while evaluating at most
100,000 characters, lists or tuples built by ``+`` at most 100,000 items, and sequences cannot
be multiplied (there is no ``**`` either).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_SOURCE_LENGTH = 2_000
MAX_NODES = 500
MAX_DEPTH = 100
MAX_STRING_LENGTH = 100_000
MAX_SEQUENCE_LENGTH = 100_000
# round(10, -10**6) would compute 10**(10**6); no sane condition needs more digits than this.
_MAX_ROUND_DIGITS = 100

_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}


class ExpressionError(ValueError):
    """The expression is not allowed, does not parse, or failed while being evaluated."""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ExpressionError(f"{name}() needs a string, got {_type_name(value)}")
    return value


def _checked_string(value: str) -> str:
    if len(value) > MAX_STRING_LENGTH:
        raise ExpressionError(f"string result longer than {MAX_STRING_LENGTH} characters")
    return value


def _fn_len(value: Any) -> int:
    if not isinstance(value, str | list | tuple | Mapping):
        raise ExpressionError(f"len() needs a string, list or object, got {_type_name(value)}")
    return len(value)


def _string_fn(name: str, method: Callable[[str], str]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        return None if value is None else method(_text(name, value))

    return apply


def _affix_fn(name: str, method: Callable[[str, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(value: Any, affix: Any) -> bool:
        if value is None:
            return False
        options = tuple(affix) if isinstance(affix, list | tuple) else (affix,)
        for option in options:
            _text(name, option)
        return method(_text(name, value), options)

    return apply


def _fn_contains(container: Any, item: Any) -> bool:
    if container is None:
        return False
    return _membership(item, container)


def _number(name: str, value: Any) -> int | float:
    if not _is_number(value):
        raise ExpressionError(f"{name}() needs a number, got {_type_name(value)}")
    result: int | float = value
    return result


def _fn_abs(value: Any) -> int | float:
    return abs(_number("abs", value))


def _extreme(name: str, pick: Callable[..., Any]) -> Callable[..., Any]:
    def apply(*args: Any) -> Any:
        items = args[0] if len(args) == 1 else args
        if not isinstance(items, list | tuple):
            raise ExpressionError(f"{name}() needs a list or several arguments")
        if not items:
            raise ExpressionError(f"{name}() of an empty list")
        try:
            return pick(items)
        except TypeError as exc:
            raise ExpressionError(f"{name}() cannot compare these values") from exc

    return apply


def _convert(name: str, kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if name in ("int", "float") and not isinstance(value, int | float | str):
            raise ExpressionError(f"{name}() cannot convert {_type_name(value)}")
        try:
            result = kind(value)
        except (ValueError, OverflowError) as exc:
            raise ExpressionError(f"{name}() cannot convert {value!r:.80}") from exc
        return _checked_string(result) if isinstance(result, str) else result

    return apply


def _fn_round(value: Any, digits: Any = None) -> int | float:
    number = _number("round", value)
    if digits is not None:
        if not isinstance(digits, int) or isinstance(digits, bool):
            raise ExpressionError("round() needs an integer number of digits")
        if abs(digits) > _MAX_ROUND_DIGITS:
            raise ExpressionError(f"round() digits must be within ±{_MAX_ROUND_DIGITS}")
    try:
        return round(number) if digits is None else round(number, digits)
    except (ValueError, OverflowError) as exc:  # nan and infinity have no integer
        raise ExpressionError(f"round() cannot round {number!r}") from exc


def _fn_exists(value: Any) -> bool:
    return value is not None


# name -> (function, fewest arguments, most arguments or None for any number)
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "len": (_fn_len, 1, 1),
    "lower": (_string_fn("lower", str.lower), 1, 1),
    "upper": (_string_fn("upper", str.upper), 1, 1),
    "strip": (_string_fn("strip", str.strip), 1, 1),
    "startswith": (_affix_fn("startswith", str.startswith), 2, 2),
    "endswith": (_affix_fn("endswith", str.endswith), 2, 2),
    "contains": (_fn_contains, 2, 2),
    "abs": (_fn_abs, 1, 1),
    "min": (_extreme("min", min), 1, None),
    "max": (_extreme("max", max), 1, None),
    "int": (_convert("int", int), 1, 1),
    "float": (_convert("float", float), 1, 1),
    "str": (_convert("str", str), 1, 1),
    "bool": (_convert("bool", bool), 1, 1),
    "round": (_fn_round, 1, 2),
    "exists": (_fn_exists, 1, 1),
}

_COMPARISONS: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda a, b: _membership(a, b)),
    ast.NotIn: ("not in", lambda a, b: not _membership(a, b)),
}

_ARITHMETIC: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
}

# Why each refused construct is refused reads better than "ast.X is not allowed".
_REFUSED: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda expressions",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.JoinedStr: "f-strings",
    ast.FormattedValue: "f-strings",
    ast.Starred: "starred arguments",
    ast.NamedExpr: "assignment expressions (:=)",
    ast.Set: "set literals",
    ast.Slice: "slices",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}
_REFUSED_OPERATORS: dict[type[ast.AST], str] = {
    ast.Pow: "'**' (power)",
    ast.MatMult: "'@'",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
    ast.BitAnd: "'&'",
    ast.BitOr: "'|'",
    ast.BitXor: "'^'",
    ast.Invert: "'~'",
    ast.Is: "'is' (use == null or exists())",
    ast.IsNot: "'is not' (use != null or exists())",
}
_ALLOWED_NODES = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Attribute,
    ast.Subscript,
    ast.Compare,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.IfExp,
    ast.Call,
    ast.expr_context,
    ast.boolop,
    ast.unaryop,
    ast.operator,
    ast.cmpop,
)


def _membership(item: Any, container: Any) -> bool:
    if isinstance(container, str) and not isinstance(item, str):
        raise ExpressionError(f"'in <string>' needs a string on the left, got {_type_name(item)}")
    if not isinstance(container, str | list | tuple | Mapping):
        raise ExpressionError(f"'in' needs a string, list or object, got {_type_name(container)}")
    try:
        return item in container
    except TypeError as exc:  # an unhashable key looked up in an object
        raise ExpressionError(f"cannot look up {_type_name(item)} in an object") from exc


def _refuse_identifier(name: str) -> None:
    if name.startswith("__") or name.endswith("__"):
        raise ExpressionError(f"names starting or ending with '__' are not allowed: {name!r}")


def _check_node(node: ast.AST) -> None:
    if type(node) in _REFUSED:
        raise ExpressionError(f"{_REFUSED[type(node)]} are not allowed")
    if type(node) in _REFUSED_OPERATORS:
        raise ExpressionError(f"operator {_REFUSED_OPERATORS[type(node)]} is not allowed")
    if not isinstance(node, _ALLOWED_NODES):
        raise ExpressionError(f"{type(node).__name__} is not allowed in an expression")
    if isinstance(node, ast.Constant) and not (
        node.value is None or isinstance(node.value, str | int | float)
    ):
        raise ExpressionError(f"constant {node.value!r:.40} is not allowed")
    if isinstance(node, ast.Name):
        _refuse_identifier(node.id)
    elif isinstance(node, ast.Attribute):
        _refuse_identifier(node.attr)
    elif isinstance(node, ast.Dict) and any(key is None for key in node.keys):
        raise ExpressionError("'**' unpacking in object literals is not allowed")
    elif isinstance(node, ast.Call):
        _check_call(node)


def _check_call(node: ast.Call) -> None:
    if isinstance(node.func, ast.Attribute):
        raise ExpressionError(
            f"method calls are not allowed ('.{node.func.attr}()'); use a function such as lower(x)"
        )
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        called = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
        allowed = ", ".join(sorted(FUNCTIONS))
        raise ExpressionError(f"calling {called!r} is not allowed; allowed functions: {allowed}")
    if node.keywords:
        raise ExpressionError(f"keyword arguments are not allowed in {node.func.id}()")
    _, fewest, most = FUNCTIONS[node.func.id]
    count = len(node.args)
    if count < fewest or (most is not None and count > most):
        if most is None:
            wanted = f"at least {fewest}"
        else:
            wanted = f"{fewest}" if fewest == most else f"{fewest} to {most}"
        raise ExpressionError(f"{node.func.id}() takes {wanted} arguments, got {count}")


def _parse(source: str) -> ast.Expression:
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, got {_type_name(source)}")
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_SOURCE_LENGTH} characters")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}") from exc
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError("expression could not be parsed") from exc
    # Walk iteratively so that a deep tree is refused rather than overflowing the stack.
    count = 0
    pending: list[tuple[ast.AST, int]] = [(tree, 0)]
    while pending:
        node, depth = pending.pop()
        _check_node(node)
        if isinstance(node, ast.expr):
            count += 1
            if count > MAX_NODES:
                raise ExpressionError(f"expression has more than {MAX_NODES} parts")
            if depth > MAX_DEPTH:
                raise ExpressionError(f"expression is nested more than {MAX_DEPTH} deep")
        pending.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree


@dataclass(frozen=True, kw_only=True)
class Expression:
    """A validated expression; constructing one checks the whitelist and limits."""

    source: str
    _tree: ast.Expression = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tree", _parse(self.source))

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
                    f"cannot compare {_type_name(left)} and {_type_name(right)} with '{symbol}'"
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
                raise ExpressionError(f"{_type_name(key)} cannot be an object key") from exc
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
    raise ExpressionError(f"cannot read field {name!r} of {_type_name(container)}")


def _item(container: Any, key: Any) -> Any:
    if container is None:
        return None
    if isinstance(container, Mapping):
        try:
            return container.get(key)
        except TypeError as exc:
            raise ExpressionError(f"{_type_name(key)} cannot be an object key") from exc
    if isinstance(container, str | list | tuple):
        if not isinstance(key, int) or isinstance(key, bool):
            raise ExpressionError(
                f"{_type_name(container)} index must be an integer, got {_type_name(key)}"
            )
        return container[key] if -len(container) <= key < len(container) else None
    raise ExpressionError(f"cannot index into {_type_name(container)}")


def _unary(op: ast.unaryop, value: Any) -> Any:
    if isinstance(op, ast.Not):
        return not value
    if not _is_number(value):
        symbol = "-" if isinstance(op, ast.USub) else "+"
        raise ExpressionError(f"unary '{symbol}' needs a number, got {_type_name(value)}")
    return -value if isinstance(op, ast.USub) else +value


def _binary(op: ast.operator, left: Any, right: Any) -> Any:
    symbol, apply = _ARITHMETIC[type(op)]
    if _is_number(left) and _is_number(right):
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
            f"'{symbol}' is not supported between {_type_name(left)} and {_type_name(right)}"
        )
    if isinstance(left, str):
        return _checked_string(left + right)
    if len(left) + len(right) > MAX_SEQUENCE_LENGTH:
        raise ExpressionError(f"list result longer than {MAX_SEQUENCE_LENGTH} items")
    return left + right
