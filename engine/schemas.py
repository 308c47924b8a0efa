"""Tenant JSON schemas, checked when saved and evaluated without touching files or network.

A workflow carries schemas its author wrote (``human_input`` and ``extract`` blocks). They
are evaluated on the server, so this module is the one place that evaluates them:

* :func:`schema_problems` (at save): valid against the Draft 2020-12 meta-schema, at most
  :data:`MAX_SCHEMA_BYTES`, only local ``#...`` references, no ``$id`` (which would rebase
  them), every ``pattern`` compilable by RE2.
* :func:`violations` (at use): a validator whose :class:`referencing.Registry` refuses every
  retrieval, whose ``pattern``/``patternProperties``/``additionalProperties`` match on RE2
  (linear time: no regular expression denial of service), and whose keyword evaluations
  are counted against :data:`EVALUATION_BUDGET`, so that a small schema that expands
  through references cannot take seconds either.
"""

from __future__ import annotations

import contextvars
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import re2
import referencing
import referencing.exceptions
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing.jsonschema import DRAFT202012

MAX_SCHEMA_BYTES = 65_536
# Keyword evaluations for one instance: far above any real form or extraction schema, far
# below what takes an API thread a noticeable time (1 to 10 µs each).
EVALUATION_BUDGET = 20_000
# Subschemas reached from the root with references followed (each reference cut where it
# would loop): a few hundred for a large real schema; a schema whose references fan out
# (``allOf`` of four references to a level that does the same, thirty levels deep) reaches
# billions and is refused when saved.
MAX_EXPANSION = 5_000
MAX_VIOLATIONS = 20
DIALECTS = frozenset(
    {
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2020-12/schema#",
    }
)
_RE2_MAX_MEM = 1 << 20  # per compiled pattern; the default (8 MiB) is generous for a tenant


class SchemaUnusable(ValueError):
    """The schema cannot be evaluated here (a reference that leaves it, too costly...)."""


@dataclass(frozen=True, kw_only=True)
class Violation:
    path: tuple[str | int, ...]  # where in the instance
    message: str


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _RE2_MAX_MEM
    return options


@functools.lru_cache(maxsize=512)
def regex(pattern: str) -> Any:
    """A compiled RE2 pattern; raises :class:`SchemaUnusable` when RE2 refuses it."""
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        raise SchemaUnusable(f"pattern {pattern!r} is not supported: {_why(exc)}") from None


def _why(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else exc
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return text or "RE2 cannot compile it (back-references and look-around are unsupported)"


# -- save-time checks ------------------------------------------------------------------------

_META = Draft202012Validator(Draft202012Validator.META_SCHEMA)


def schema_problems(schema: Any, *, max_bytes: int = MAX_SCHEMA_BYTES) -> list[str]:
    """Why ``schema`` may not be saved (empty when it may)."""
    size = len(json.dumps(schema, separators=(",", ":")).encode())
    if size > max_bytes:
        return [f"a schema may be at most {max_bytes} bytes of JSON (this one is {size})"]
    problems = [f"{_pointer(e.absolute_path)}: {e.message}" for e in _META.iter_errors(schema)]
    if problems:
        return problems[:MAX_VIOLATIONS]
    if isinstance(schema, Mapping) and schema.get("$schema", next(iter(DIALECTS))) not in DIALECTS:
        return ["$schema: only JSON Schema 2020-12 is supported"]
    for sub in _subschemas(schema):
        problems.extend(_keyword_problems(sub))
    if problems:
        return problems[:MAX_VIOLATIONS]
    if _uses(schema, "unevaluatedProperties") and _uses(schema, "patternProperties"):
        # jsonschema matches patternProperties with Python's re for unevaluatedProperties.
        return ["unevaluatedProperties cannot be combined with patternProperties"]
    if _expansion(schema) > MAX_EXPANSION:
        return [f"the schema expands to more than {MAX_EXPANSION} subschemas through $ref"]
    return []


def _keyword_problems(sub: Mapping[str, Any]) -> Iterator[str]:
    for keyword in ("$ref", "$dynamicRef"):
        target = sub.get(keyword)
        if isinstance(target, str) and not target.startswith("#"):
            yield f"{keyword} {target[:100]!r} leaves the schema: only '#...' references"
    if "$id" in sub:
        yield "$id is not supported (references stay inside the schema)"
    patterns = [sub["pattern"]] if isinstance(sub.get("pattern"), str) else []
    if isinstance(sub.get("patternProperties"), Mapping):
        patterns.extend(sub["patternProperties"])
    for p in patterns:
        try:
            regex(p)
        except SchemaUnusable as exc:
            yield str(exc)


def _subschemas(schema: Any) -> Iterator[Mapping[str, Any]]:
    """Every subschema, found the way the 2020-12 vocabulary defines them (not every dict:
    a ``const`` or ``default`` value holding ``$ref`` is data, not a reference)."""
    todo = [DRAFT202012.create_resource(schema)]
    while todo:
        current = todo.pop()
        if isinstance(current.contents, Mapping):
            yield current.contents
        todo.extend(current.subresources())


def _uses(schema: Any, keyword: str) -> bool:
    return any(keyword in sub for sub in _subschemas(schema))


def _expansion(schema: Any) -> int:
    """How many subschemas one pass over the schema visits, references followed."""
    uri = "urn:quorum:schema"
    resolver = _REGISTRY.with_resource(uri, DRAFT202012.create_resource(schema)).resolver(uri)
    total = 0
    # (subschema, ids of the subschemas whose reference led here): a reference back to one
    # of them is a loop, cut (counted once).
    todo: list[tuple[Any, frozenset[int]]] = [(schema, frozenset())]
    while todo and total <= MAX_EXPANSION:
        sub, trail = todo.pop()
        total += 1
        if not isinstance(sub, Mapping):
            continue
        todo.extend(
            (child.contents, trail) for child in DRAFT202012.create_resource(sub).subresources()
        )
        for keyword in ("$ref", "$dynamicRef"):
            target = sub.get(keyword)
            if not isinstance(target, str):
                continue
            try:
                found = resolver.lookup(target).contents
            except referencing.exceptions.Unresolvable:
                continue  # reported by validation at use
            if id(found) not in trail:
                todo.append((found, trail | {id(found)}))
    return total


def _pointer(path: Any) -> str:
    parts = [str(p) for p in path]
    return "/" + "/".join(parts) if parts else "schema"


# -- evaluation --------------------------------------------------------------------------------


def _refuse(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


# Holds nothing and retrieves nothing: only the schema being evaluated resolves.
_REGISTRY: referencing.Registry[Any] = referencing.Registry(retrieve=_refuse)  # type: ignore[call-arg]
_spent: contextvars.ContextVar[list[int]] = contextvars.ContextVar("quorum_schema_budget")


def _counted(keyword: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(keyword)
    def evaluate(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        spent = _spent.get(None)
        if spent is not None:
            spent[0] += 1
            if spent[0] > EVALUATION_BUDGET:
                raise SchemaUnusable("the schema takes too much work to evaluate")
        return keyword(validator, value, instance, schema)

    return evaluate


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not regex(pattern).search(instance):
        yield ValidationError(f"{instance[:80]!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if regex(pattern).search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, extra_schema: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties") or {}
    patterns = [regex(p) for p in schema.get("patternProperties") or {}]
    extras = [k for k in instance if k not in properties and not any(p.search(k) for p in patterns)]
    if validator.is_type(extra_schema, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra_schema, path=key)
    elif not extra_schema and extras:
        shown = ", ".join(repr(k) for k in sorted(extras)[:10])
        yield ValidationError(f"additional properties are not allowed ({shown})")


_KEYWORDS = {
    **Draft202012Validator.VALIDATORS,
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}
SafeValidator = validators.extend(
    Draft202012Validator, validators={k: _counted(fn) for k, fn in _KEYWORDS.items()}
)


@functools.lru_cache(maxsize=256)
def _validator(canonical: str) -> Any:
    schema = json.loads(canonical)
    problems = schema_problems(schema)
    if problems:
        raise SchemaUnusable(problems[0])
    return SafeValidator(schema, registry=_REGISTRY, format_checker=None)


def validator_for(schema: Any) -> Any:
    """The safe validator of ``schema`` (cached); :class:`SchemaUnusable` if it may not run.

    Schemas saved before these checks existed are checked here too, so an old workflow
    cannot smuggle a remote reference or an RE2-less pattern in.
    """
    return _validator(json.dumps(schema, sort_keys=True, separators=(",", ":")))


def violations(schema: Any, instance: Any) -> list[Violation]:
    """Where ``instance`` does not fit ``schema`` (at most :data:`MAX_VIOLATIONS`).

    Raises :class:`SchemaUnusable` when the schema cannot be evaluated safely: it is not
    acceptable any more, refers outside itself, or takes more than the budget.
    """
    validator = validator_for(schema)
    token = _spent.set([0])
    try:
        found: list[Violation] = []
        for error in validator.iter_errors(instance):
            found.append(Violation(path=tuple(error.absolute_path), message=error.message))
            if len(found) >= MAX_VIOLATIONS:
                break
    except referencing.exceptions.Unresolvable as exc:
        raise SchemaUnusable(f"the schema refers to {exc.ref!r}, which it does not hold") from None
    except RecursionError:
        raise SchemaUnusable("the schema refers to itself without end") from None
    finally:
        _spent.reset(token)
    return sorted(found, key=lambda v: [str(p) for p in v.path])
