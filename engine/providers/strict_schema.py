"""The strict structured-output form of a JSON schema, and answers mapped back from it.

OpenAI-compatible servers in strict mode accept only objects that list every property in
``required`` and forbid additional ones. :func:`strict_form` rewrites a schema that way: an
optional property becomes required but nullable, at every depth (nested objects, array
items, ``anyOf`` branches, ``$defs``). :func:`from_strict` maps an answer back: a ``null``
in a property the original schema left optional is dropped, so the answer fits the schema
the user wrote. Some schemas have no strict form (a free-form object, ``allOf``...): for
those :func:`strict_form` returns None and the caller asks without strict mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
from referencing import Registry

# Keywords strict mode cannot express; a schema using one is sent as it is, not strict.
_UNSUPPORTED = frozenset(
    {
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "propertyNames",
        "dependentSchemas",
        "dependentRequired",
        "unevaluatedProperties",
        "unevaluatedItems",
        "prefixItems",
    }
)
_DEFS = ("$defs", "definitions")


class NoStrictForm(ValueError):
    pass


def strict_form(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """The strict-compatible form of ``schema``, or None when it has none."""
    try:
        return _strict(schema)
    except NoStrictForm:
        return None


def _strict(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, Mapping):
        raise NoStrictForm("a boolean schema")
    if _UNSUPPORTED & set(schema):
        raise NoStrictForm(f"uses {sorted(_UNSUPPORTED & set(schema))}")
    out: dict[str, Any] = dict(schema)
    if "oneOf" in out:  # exactly-one is not expressible; the answer is checked afterwards
        out["anyOf"] = out.pop("oneOf")
    if "anyOf" in out:
        out["anyOf"] = [_strict(branch) for branch in out["anyOf"]]
    for defs in _DEFS:
        if isinstance(out.get(defs), Mapping):
            out[defs] = {name: _strict(sub) for name, sub in out[defs].items()}
    if _is_object(out):
        out.update(_strict_object(out))
    if "items" in out:
        out["items"] = _strict(out["items"])
    return out


def _is_object(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return (
        "properties" in schema or kind == "object" or (isinstance(kind, list) and "object" in kind)
    )


def _strict_object(schema: Mapping[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise NoStrictForm("properties is not an object")
    if not properties and schema.get("additionalProperties") is not False:
        raise NoStrictForm("a free-form object")
    required = set(schema.get("required") or ())
    return {
        "properties": {
            name: _strict(sub) if name in required else _nullable(_strict(sub))
            for name, sub in properties.items()
        },
        "required": list(properties),
        "additionalProperties": False,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if "$ref" in schema or "anyOf" in schema or "const" in schema or kind is None:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    if isinstance(kind, str):
        out["type"] = kind if kind == "null" else [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        out["type"] = [*kind, "null"]
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def from_strict(value: Any, schema: Mapping[str, Any]) -> Any:
    """An answer to the strict form, as an answer to ``schema`` (optional nulls dropped)."""
    return _back(value, schema, schema, 0)


def _back(value: Any, schema: Any, root: Mapping[str, Any], depth: int) -> Any:
    if not isinstance(schema, Mapping) or depth > 64:
        return value
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _back(value, _resolve(ref, root), root, depth + 1)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list):
        return _back_branch(value, branches, root, depth)
    properties = schema.get("properties")
    if isinstance(value, dict) and isinstance(properties, Mapping):
        required = set(schema.get("required") or ())
        return {
            name: _back(item, properties.get(name), root, depth + 1)
            for name, item in value.items()
            if not (item is None and name in properties and name not in required)
        }
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_back(item, schema["items"], root, depth + 1) for item in value]
    return value


def _back_branch(value: Any, branches: list[Any], root: Mapping[str, Any], depth: int) -> Any:
    # The branch the answer was meant for is the one its mapped-back form fits.
    for branch in branches:
        mapped = _back(value, branch, root, depth + 1)
        if _fits(mapped, branch, root):
            return mapped
    return value


def _fits(value: Any, branch: Any, root: Mapping[str, Any]) -> bool:
    if not isinstance(branch, Mapping):
        return bool(branch)
    wrapper = {d: root[d] for d in _DEFS if isinstance(root.get(d), Mapping)}
    validator = jsonschema.Draft202012Validator({**wrapper, **branch}, registry=Registry())
    try:
        return bool(validator.is_valid(value))
    except Exception:  # a schema that cannot be evaluated decides nothing here
        return False


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
