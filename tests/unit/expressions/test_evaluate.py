"""Evaluating expressions: lookups, comparisons, logic, arithmetic, literals, and errors."""

from __future__ import annotations

from typing import Any

import pytest

from engine.expressions.evaluate import Expression, compile_expression, evaluate
from engine.expressions.values import ExpressionError
from tests.support.expressions import VARIABLES


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # constants and JSON-style literals
        ("1", 1),
        ("2.5", 2.5),
        ("'text'", "text"),
        ("True", True),
        ("None", None),
        ("true", True),
        ("false", False),
        ("null", None),
        # names, fields and subscripts
        ("threshold", 0.5),
        ("input.score", 0.82),
        ("input.vendor.country", "DE"),
        ("input['vendor']['name']", "ACME"),
        ("items[0]", 10),
        ("items[-1]", 30),
        ("input.tags[1]", "finance"),
        ("input.status[0]", "A"),
        # forgiving lookups
        ("input.missing", None),
        ("input.missing.deeper.still", None),
        ("input.nothing.field", None),
        ("input['missing']", None),
        ("items[3]", None),
        ("items[-4]", None),
        ("input.nothing[0]", None),
        ("exists(input.missing)", False),
        ("exists(input.score)", True),
        ("input.missing == null", True),
        # comparisons
        ("input.score > threshold", True),
        ("input.score <= threshold", False),
        ("input.count == 3", True),
        ("input.count != 3", False),
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("0 <= input.score < 1", True),
        ("3 > 2 == 2", True),
        ("'urgent' in input.tags", True),
        ("'legal' not in input.tags", True),
        ("'ACME' in input.vendor.name", True),
        ("'voice' in input.name", True),
        ("'name' in input.vendor", True),
        ("'zip' in input.vendor", False),
        ("20 in items", True),
        # boolean logic keeps Python's operand-returning semantics
        ("input.score > 0.5 and input.status == 'Approved'", True),
        ("input.empty or 'fallback'", "fallback"),
        ("input.empty and 'never'", ""),
        ("not input.empty", True),
        ("not input.tags", False),
        ("0 or null or 'last'", "last"),
        # arithmetic
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-input.count", -3),
        ("+input.score", 0.82),
        ("input.count - 1.5", 1.5),
        ("'a' + 'b'", "ab"),
        ("[1] + [2, 3]", [1, 2, 3]),
        ("(1,) + (2,)", (1, 2)),
        # literals and conditionals
        ("[1, 'a', null]", [1, "a", None]),
        ("(1, 2)", (1, 2)),
        ("{'a': 1, 'b': [true]}", {"a": 1, "b": [True]}),
        ("input.status in ('Approved', 'Paid')", True),
        ("'high' if input.score > 0.8 else 'low'", "high"),
        ("'high' if input.score > 0.9 else 'low'", "low"),
    ],
)
def test_evaluates(source: str, expected: Any) -> None:
    result = evaluate(source, VARIABLES)
    assert result == expected
    assert type(result) is type(expected)


def test_variables_with_literal_names_are_shadowed_by_literals() -> None:
    assert evaluate("null", {"null": 5}) is None


def test_compiled_expression_is_reusable_and_comparable() -> None:
    expression = compile_expression("input.score > threshold")
    assert isinstance(expression, Expression)
    assert expression.evaluate(VARIABLES) is True
    assert expression.evaluate({"input": {"score": 0.1}, "threshold": 0.5}) is False
    assert expression == compile_expression("input.score > threshold")
    assert hash(expression) == hash(Expression(source="input.score > threshold"))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("unknown", "unknown name 'unknown'"),
        ("len", "unknown name 'len'"),
        ("'a' < 1", "cannot compare string and int with '<'"),
        ("null > 1", "cannot compare null and int with '>'"),
        ("1 in 'abc'", "'in <string>' needs a string on the left, got int"),
        ("1 in 5", "'in' needs a string, list or object, got int"),
        ("'x' in null", "'in' needs a string, list or object, got null"),
        ("[1] in input", "cannot look up list in an object"),
        ("1 / 0", "division by zero in '/'"),
        ("1 // 0", "division by zero in '//'"),
        ("1 % 0", "division by zero in '%'"),
        ("'a' * 1000000000", "'*' is not supported between string and int"),
        ("[1] * 3", "'*' is not supported between list and int"),
        ("'a' + 1", "'+' is not supported between string and int"),
        ("[1] + (2,)", "'+' is not supported between list and tuple"),
        ("'%s' % 1", "'%' is not supported between string and int"),
        ("true + 1", "'+' is not supported between bool and int"),
        ("-'a'", "unary '-' needs a number, got string"),
        ("input.score.value", "cannot read field 'value' of float"),
        ("items['a']", "list index must be an integer, got string"),
        ("items[true]", "list index must be an integer, got bool"),
        ("threshold[0]", "cannot index into float"),
        ("float('1e999') // 0.0", "division by zero"),
        ("{[1]: 2}", "list cannot be an object key"),
        ("big + big", "string result longer than 100000 characters"),
        ("str(items + items) + big + big", "string result longer than 100000 characters"),
    ],
)
def test_errors_at_evaluation_time(source: str, message: str) -> None:
    expression = compile_expression(source)  # valid: the failure needs the values
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate(VARIABLES)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("false and unknown", False),
        ("true or unknown", True),
        ("input.missing and input.missing.x > 1", None),
        ("exists(input.missing) and len(input.missing) > 0", False),
        ("1 > 2 < unknown", False),
        ("'a' if true else 1 / 0", "a"),
        ("1 / 0 if false else 'a'", "a"),
    ],
)
def test_short_circuit_never_evaluates_the_rest(source: str, expected: Any) -> None:
    # Each expression would raise if the skipped part were evaluated.
    result = evaluate(source, VARIABLES)
    assert result == expected
    assert type(result) is type(expected)


def test_long_list_concatenation_is_refused() -> None:
    variables = {"xs": list(range(60_000))}
    assert len(evaluate("xs + [1]", variables)) == 60_001
    with pytest.raises(ExpressionError, match="longer than 100000 items"):
        evaluate("xs + xs", variables)


def test_odd_values_in_variables_still_raise_expression_errors() -> None:
    class Weird:
        def __bool__(self) -> bool:
            raise TypeError("no truth value")

        def __eq__(self, other: object) -> bool:
            raise TypeError("no comparing")

        __hash__ = object.__hash__

    with pytest.raises(ExpressionError, match="evaluation failed: no truth value"):
        evaluate("not w", {"w": Weird()})
    with pytest.raises(ExpressionError, match="cannot compare Weird and int with '=='"):
        evaluate("w == 1", {"w": Weird()})
