"""Model answers against the schema they were asked to fit; the error when none fits."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from engine.answers import (
    ALL_FAILED,
    BAD_ANSWER,
    SchemaUnusable,
    answer_problem,
    none_valid,
)
from engine.storable import unstorable

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "a": {"type": "string"},
        "b": {"type": "number"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
    },
    "required": ["b"],
    "$defs": {"item": {"type": "object", "properties": {"qty": {"type": "integer"}}}},
}


def test_a_fitting_answer_has_no_problem() -> None:
    assert answer_problem(SCHEMA, {"b": 2}) is None
    assert answer_problem(SCHEMA, {"a": "x", "b": 2.5, "items": [{"qty": 3}]}) is None


def test_an_answer_that_does_not_fit_says_where_and_why() -> None:
    problem = answer_problem(SCHEMA, {"b": "lots"})
    assert problem == "the answer does not fit the schema: at b: 'lots' is not of type 'number'"
    nested = answer_problem(SCHEMA, {"b": 1, "items": [{"qty": 1}, {"qty": "two"}]})
    assert nested is not None and "at items[1].qty: 'two' is not of type 'integer'" in nested
    missing = answer_problem(SCHEMA, {})
    assert missing is not None and "'b' is a required property" in missing
    assert answer_problem(SCHEMA, "just text") is not None
    many = answer_problem(
        {"type": "object", "properties": {k: {"type": "integer"} for k in "abcde"}},
        {k: "x" for k in "abcde"},
    )
    assert many is not None and many.endswith("and 2 more")


def test_a_category_outside_the_list_does_not_fit() -> None:
    schema = {
        "type": "object",
        "properties": {"category": {"type": "string", "enum": ["invoice", "receipt"]}},
        "required": ["category"],
        "additionalProperties": False,
    }
    assert answer_problem(schema, {"category": "receipt"}) is None
    assert answer_problem(schema, {"category": "letter"}) is not None
    assert answer_problem(schema, {"category": "invoice", "why": "x"}) is not None


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "nope"}}},
        {"type": "object", "properties": {"a": {"$ref": "https://example.invalid/s.json"}}},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
    ],
)
def test_a_schema_that_cannot_be_evaluated_is_unusable(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaUnusable):
        answer_problem(schema, {"a": 1})


def test_none_valid_blames_the_answers_when_models_answered() -> None:
    reason = "the answer does not fit the schema: at b: 'lots' is not of type 'number'"
    kind, message = none_valid(
        [(BAD_ANSWER, reason), ("provider_timeout", "slow"), (BAD_ANSWER, "other")]
    )
    assert kind == BAD_ANSWER
    assert message == f"none of the 3 answers fits the schema ({reason})"
    assert none_valid([("provider_timeout", "slow")] * 2) == (ALL_FAILED, "all 2 attempts failed")


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({1, 2}, "a set at the top"),
        ({"a": [1, {"b": {2}}]}, "a set at a[1].b"),
        ({"when": date(2026, 1, 1)}, "a date at when"),
        ({(1, 2): "x"}, "a tuple key at the top"),
        ([float("nan")], "the number NaN at [0]"),
        ({"x": float("inf")}, "the number inf at x"),
        (b"bytes", "a bytes at the top"),
    ],
)
def test_a_function_result_names_the_first_value_that_is_not_json(value: Any, found: str) -> None:
    assert unstorable(value) == found


def test_json_values_pass() -> None:
    assert unstorable({"a": [1, 2.5, "x", None, True, {"b": []}], "t": (1, 2)}) is None
