"""Compiling an expression: the whitelist and the limits, refused before anything runs."""

from __future__ import annotations

import pytest

from engine.expressions.evaluate import compile_expression
from engine.expressions.parse import MAX_SOURCE_LENGTH
from engine.expressions.values import ExpressionError


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("__import__('os')", "calling '__import__' is not allowed"),
        ("().__class__", "'__class__'"),
        ("input.__class__", "'__class__'"),
        ("__builtins__", "'__builtins__'"),
        ("[x for x in y]", "comprehensions are not allowed"),
        ("{k: 1 for k in y}", "comprehensions are not allowed"),
        ("(x for x in y)", "generator expressions are not allowed"),
        ("{1, 2}", "set literals are not allowed"),
        ("lambda: 1", "lambda expressions are not allowed"),
        ("2**1000", "'**' (power) is not allowed"),
        ("'a' * 10**9", "'**' (power) is not allowed"),
        ("f'{input}'", "f-strings are not allowed"),
        ("len(*items)", "starred arguments are not allowed"),
        ("{**input}", "unpacking"),
        ("(y := 1)", "assignment expressions"),
        ("input.keys()", "method calls are not allowed"),
        ("'a'.upper()", "method calls are not allowed"),
        ("open('/etc/passwd')", "calling 'open' is not allowed"),
        ("eval('1')", "calling 'eval' is not allowed"),
        ("items[0](1)", "calling 'Subscript' is not allowed"),
        ("round(1.5, ndigits=1)", "keyword arguments are not allowed"),
        ("len()", "len() takes 1 arguments, got 0"),
        ("round(1, 2, 3)", "round() takes 1 to 2 arguments, got 3"),
        ("max()", "max() takes at least 1 arguments, got 0"),
        ("items[0:2]", "slices are not allowed"),
        ("x is None", "'is'"),
        ("x is not None", "'is not'"),
        ("1 << 2", "'<<'"),
        ("1 | 2", "'|'"),
        ("~1", "'~'"),
        ("b'bytes'", "constant b'bytes' is not allowed"),
        ("1j", "constant 1j is not allowed"),
        ("...", "constant Ellipsis is not allowed"),
        ("1 +", "syntax error"),
        ("x = 1", "syntax error"),
        ("import os", "syntax error"),
        ("a\x00b", "null bytes"),
        ("[" + "1, " * 500 + "]", "more than 500 parts"),
        ("not " * 150 + "x", "nested more than 100 deep"),
        ("1 + " * 150 + "1", "nested more than 100 deep"),
        ("-" * 1999 + "1", "nested more than 100 deep"),
    ],
)
def test_refused_at_compile_time(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    assert message in str(caught.value)


def test_source_length_limit() -> None:
    with pytest.raises(ExpressionError, match="longer than 2000 characters"):
        compile_expression("1" + " " * MAX_SOURCE_LENGTH)


def test_source_must_be_a_string() -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        compile_expression(42)  # type: ignore[arg-type]
