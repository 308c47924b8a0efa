"""The strict structured-output form of schemas, and answers mapped back to the original."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine.providers.strict_schema import from_strict, strict_form

INVOICE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "number": {"type": "string"},
        "total": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "vendor": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "vat": {"type": "string"}},
            "required": ["name"],
        },
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                "required": ["sku"],
            },
        },
        "tags": {"type": "array", "items": {"type": "string"}},
        "paid_by": {"$ref": "#/$defs/party"},
        "note": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/party"}]},
    },
    "required": ["number", "total"],
    "$defs": {
        "party": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "iban": {"type": "string"}},
            "required": ["name"],
        }
    },
}


def objects(schema: Any) -> Iterator[dict[str, Any]]:
    """Every object schema inside ``schema``, at any depth."""
    if isinstance(schema, dict):
        if "properties" in schema:
            yield schema
        for value in schema.values():
            yield from objects(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from objects(value)


def test_every_object_lists_all_its_properties_and_forbids_others() -> None:
    strict = strict_form(INVOICE)
    assert strict is not None
    found = list(objects(strict))
    assert len(found) == 4  # the invoice, its vendor, a line, the party definition
    for obj in found:
        assert obj["required"] == list(obj["properties"])
        assert obj["additionalProperties"] is False
    Draft202012Validator.check_schema(strict)
    # Optional properties become nullable; required ones stay as they were.
    props = strict["properties"]
    assert props["number"] == {"type": "string"}
    assert props["currency"] == {"type": ["string", "null"], "enum": ["EUR", "USD", None]}
    assert props["vendor"]["type"] == ["object", "null"]
    assert props["vendor"]["properties"]["vat"] == {"type": ["string", "null"]}
    assert props["vendor"]["properties"]["name"] == {"type": "string"}
    assert props["lines"]["items"]["properties"]["qty"] == {"type": ["integer", "null"]}
    assert props["paid_by"] == {"anyOf": [{"$ref": "#/$defs/party"}, {"type": "null"}]}
    assert strict["$defs"]["party"]["properties"]["iban"] == {"type": ["string", "null"]}
    # The user's schema is left as it was.
    assert "additionalProperties" not in INVOICE


def test_answers_map_back_to_the_users_schema() -> None:
    strict = strict_form(INVOICE)
    assert strict is not None
    answer = {
        "number": "INV-7",
        "total": 12.5,
        "currency": None,
        "vendor": {"name": "ACME", "vat": None},
        "lines": [{"sku": "A", "qty": None}, {"sku": "B", "qty": 2}],
        "tags": None,
        "paid_by": {"name": "Bob", "iban": None},
        "note": {"name": "Eve", "iban": None},
    }
    assert Draft202012Validator(strict).is_valid(answer)
    back = from_strict(answer, INVOICE)
    assert back == {
        "number": "INV-7",
        "total": 12.5,
        "vendor": {"name": "ACME"},
        "lines": [{"sku": "A"}, {"sku": "B", "qty": 2}],
        "paid_by": {"name": "Bob"},
        "note": {"name": "Eve"},
    }
    assert Draft202012Validator(INVOICE).is_valid(back)
    # Without mapping back the nulls would not fit: the original is not nullable.
    assert not Draft202012Validator(INVOICE).is_valid(answer)
    # A string branch of the anyOf stays a string.
    assert from_strict({**answer, "note": "cash"}, INVOICE)["note"] == "cash"


def test_a_null_in_a_required_property_is_kept_for_the_check_to_refuse() -> None:
    back = from_strict({"number": None, "total": 1}, INVOICE)
    assert back == {"number": None, "total": 1}
    assert not Draft202012Validator(INVOICE).is_valid(back)


def test_already_strict_schemas_are_unchanged() -> None:
    classifier = {
        "type": "object",
        "properties": {"category": {"type": "string", "enum": ["a", "b"]}},
        "required": ["category"],
        "additionalProperties": False,
    }
    assert strict_form(classifier) == classifier
    assert from_strict({"category": "a"}, classifier) == {"category": "a"}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},
        {"type": "object", "properties": {"meta": {"type": "object"}}},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "object", "properties": {"a": {"allOf": [{"type": "string"}]}}},
        {"type": "object", "properties": {"a": True}},
        {"type": "object", "properties": {"a": {"type": "array", "prefixItems": []}}},
    ],
)
def test_schemas_without_a_strict_form(schema: dict[str, Any]) -> None:
    assert strict_form(schema) is None


def test_one_of_becomes_any_of_and_empty_closed_objects_are_kept() -> None:
    schema = {
        "type": "object",
        "properties": {
            "v": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
            "empty": {"type": "object", "properties": {}, "additionalProperties": False},
        },
        "required": ["v", "empty"],
    }
    strict = strict_form(schema)
    assert strict is not None
    assert strict["properties"]["v"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert strict["properties"]["empty"]["required"] == []
