"""Checking an expression when it is compiled: a whitelist of syntax, and limits on size.

The source is parsed with :func:`ast.parse` in ``eval`` mode and every node is checked here;
nothing is ever handed to Python's ``eval``, ``exec`` or ``compile``.
"""

from __future__ import annotations

import ast

from engine.expressions.functions import FUNCTIONS
from engine.expressions.values import ExpressionError, type_name

MAX_SOURCE_LENGTH = 2_000
MAX_NODES = 500
MAX_DEPTH = 100


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


def parse(source: str) -> ast.Expression:
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, got {type_name(source)}")
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
