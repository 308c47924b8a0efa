"""Tenant JSON schemas: refused when saved if they leave themselves, evaluated safely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import Invalid
from engine.graph.parse import parse_graph
from engine.run.turns import validate_answer
from engine.schemas import (
    MAX_SCHEMA_BYTES,
    SchemaUnusable,
    schema_problems,
    violations,
)


def _graph(block_type: str, schema: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"schema": schema}
    target = "prompt" if block_type == "human_input" else "document"
    return {
        "blocks": [
            {"id": "start", "type": "start", "config": {"inputs": {"x": {"type": "json"}}}},
            {"id": "b", "type": block_type, "config": config},
        ],
        "edges": [
            {"source": "start", "source_handle": "x", "target": "b", "target_handle": target}
        ],
    }


@pytest.mark.parametrize("block_type", ["human_input", "extract"])
@pytest.mark.parametrize(
    "ref", ["http://127.0.0.1:8399/evil.json", "file:///etc/passwd", "other.json#/a"]
)
def test_a_reference_that_leaves_the_schema_is_refused_at_save(block_type: str, ref: str) -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": ref}}}
    with pytest.raises(Invalid) as exc:
        parse_graph(_graph(block_type, schema))
    assert any(e.loc[-1] == "schema" and "leaves the schema" in e.msg for e in exc.value.errors)


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"type": "object", "properties": {"a": {"pattern": "(a)\\1"}}}, "not supported"),
        ({"type": "object", "patternProperties": {"(?=x)": {}}}, "not supported"),
        ({"type": "object", "properties": {"a": {"type": "nope"}}}, "not valid"),
        ({"type": "object", "$defs": {"a": {"$id": "http://x/"}}}, "$id"),
        ({"type": "object", "$schema": "http://json-schema.org/draft-07/schema#"}, "2020-12"),
        (
            {"type": "object", "unevaluatedProperties": False, "patternProperties": {"^x": {}}},
            "unevaluatedProperties",
        ),
    ],
)
def test_unsafe_or_invalid_schemas_are_refused(schema: dict[str, Any], why: str) -> None:
    problems = schema_problems(schema)
    assert problems and why in problems[0]


def test_a_schema_that_fans_out_through_references_is_refused() -> None:
    # 4**30 evaluations for one value: small text, unbounded work.
    defs: dict[str, Any] = {
        f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 4} for i in range(30)
    }
    defs["d30"] = {"type": "integer"}
    problems = schema_problems(
        {"type": "object", "$defs": defs, "properties": {"x": {"$ref": "#/$defs/d0"}}}
    )
    assert problems and "expands" in problems[0]


def test_size_is_bounded() -> None:
    schema = {"type": "object", "description": "x" * MAX_SCHEMA_BYTES}
    assert "at most" in schema_problems(schema)[0]


def test_local_references_recursion_and_data_that_looks_like_a_reference_are_fine() -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z]+$"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
            }
        },
        "$ref": "#/$defs/node",
        "default": {"$ref": "http://not-a-reference/"},
    }
    assert schema_problems(tree) == []
    found = violations(tree, {"name": "a", "children": [{"name": "B"}]})
    assert [v.path for v in found] == [("children", 0, "name")]


def test_a_remote_reference_stored_before_the_checks_is_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"const": "TOP-SECRET"}))
    with pytest.raises(Invalid) as exc:
        validate_answer({"$ref": secret.as_uri()}, "x")
    assert "TOP-SECRET" not in json.dumps([e.as_dict() for e in exc.value.errors])
    assert "leaves the schema" in exc.value.errors[0].msg


def test_patterns_match_on_re2_including_pattern_and_additional_properties() -> None:
    schema = {
        "type": "object",
        "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}},
        "patternProperties": {"^x_": {"type": "integer"}},
        "additionalProperties": False,
    }
    # 40 characters: Python's re would need about 2**40 steps for this one.
    found = violations(schema, {"s": "a" * 40 + "b", "x_1": "no", "other": 1})
    messages = " | ".join(v.message for v in found)
    assert "does not match" in messages
    assert "not of type 'integer'" in messages
    assert "'other'" in messages
    assert violations(schema, {"s": "aaa", "x_1": 2}) == []


def test_a_self_reference_that_never_descends_is_unusable_not_a_crash() -> None:
    with pytest.raises(SchemaUnusable):
        violations({"$ref": "#"}, 1)


def test_work_is_bounded_for_recursive_fan_out() -> None:
    rec = {
        "$defs": {
            "n": {
                "allOf": [
                    {"properties": {"a": {"$ref": "#/$defs/n"}}},
                    {"properties": {"a": {"$ref": "#/$defs/n"}}},
                ]
            }
        },
        "$ref": "#/$defs/n",
    }
    assert schema_problems(rec) == []  # statically small: it only doubles per level of data
    deep: dict[str, Any] = {}
    cur = deep
    for _ in range(25):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(SchemaUnusable, match="too much work"):
        violations(rec, deep)
