"""The functions a condition may call: what each answers, and how each refuses bad values."""

from __future__ import annotations

from typing import Any

import pytest

from engine.expressions.evaluate import compile_expression, evaluate
from engine.expressions.values import ExpressionError
from tests.support.expressions import VARIABLES


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("len(input.tags)", 2),
        ("len('abc')", 3),
        ("len(input.vendor)", 2),
        ("lower(input.status)", "approved"),
        ("upper(input.vendor.country)", "DE"),
        ("strip(input.name)", "Invoice 42"),
        ("lower(input.missing)", None),
        ("startswith(input.status, 'App')", True),
        ("startswith(input.status, ['Rej', 'App'])", True),
        ("endswith(input.vendor.name, 'ME')", True),
        ("endswith(input.missing, 'x')", False),
        ("contains(input.tags, 'finance')", True),
        ("contains('abc', 'd')", False),
        ("contains(input.missing, 'x')", False),
        ("abs(-2.5)", 2.5),
        ("min(items)", 10),
        ("max(3, 9, 4)", 9),
        ("int('42')", 42),
        ("int(3.9)", 3),
        ("float('1.5')", 1.5),
        ("str(12)", "12"),
        ("bool('')", False),
        ("round(2.675)", 3),
        ("round(3.14159, 2)", 3.14),
    ],
)
def test_functions(source: str, expected: Any) -> None:
    result = evaluate(source, VARIABLES)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("len(3)", "len() needs a string, list or object, got int"),
        ("len(null)", "len() needs a string, list or object, got null"),
        ("lower(3)", "lower() needs a string, got int"),
        ("startswith('abc', 1)", "startswith() needs a string, got int"),
        ("abs('x')", "abs() needs a number, got string"),
        ("min(1, 'a')", "min() cannot compare these values"),
        ("max([])", "max() of an empty list"),
        ("min(5)", "min() needs a list or several arguments"),
        ("int('x')", "int() cannot convert 'x'"),
        ("int([1])", "int() cannot convert list"),
        ("int(float('inf'))", "int() cannot convert inf"),
        ("round(float('nan'))", "round() cannot round nan"),
        ("round(1, 1000)", "round() digits must be within ±100"),
        ("round(1, 'a')", "round() needs an integer number of digits"),
    ],
)
def test_function_errors(source: str, message: str) -> None:
    expression = compile_expression(source)  # valid: the failure needs the values
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate(VARIABLES)
    assert message in str(caught.value)
