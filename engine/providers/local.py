"""Deterministic, network-free answers read off the document text by simple heuristics."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from engine.providers.base import ModelRequest, ModelResponse, elapsed_ms
from engine.providers.prompt import document_text, dumps, render_prompt


class LocalProvider:
    """Deterministic, network-free answers read off the document text by simple heuristics.

    Good enough for demos and tests of the engine itself; the answer always fits the schema's
    shape, but it is not a model.
    """

    name = "local"

    def __init__(self, *, model: str = "local-1") -> None:
        self._model = model

    def close(self) -> None:
        return None

    def complete(self, request: ModelRequest) -> ModelResponse:
        started = time.perf_counter()
        system, user = render_prompt(request)
        text = document_text(request.document)
        schema = request.json_schema
        if request.task == "classify":
            data = _local_classify(schema, text, request.document)
        elif request.task == "split":
            data = _local_split(schema, text, request.document)
        else:
            # Unknown tasks still get a schema-shaped answer rather than a failure.
            data = _local_extract(schema, text, request.document)
        answer_text = dumps(data)
        return ModelResponse(
            data=data,
            provider=self.name,
            model=request.model or self._model,
            prompt_tokens=len(system.split()) + len(user.split()),
            completion_tokens=len(answer_text.split()),
            latency_ms=elapsed_ms(started),
        )


_MAX_DEPTH = 32
# Marks "the text says nothing usable here", distinct from a legitimate None answer.
_MISSING: Any = object()
_KEY_SEPARATORS = re.compile(r"[\s_\-]+")
_FIELD_LINE = re.compile(
    r"""^\s*(?:[-*+>]\s+|\#+\s*)?["']?(?P<key>[^:="'\n]+?)["']?\s*[:=]\s*(?P<value>.*?)\s*$"""
)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
_TRUE_WORDS = frozenset({"yes", "true", "y"})
_FALSE_WORDS = frozenset({"no", "false", "n"})


def _norm_key(text: str) -> str:
    return _KEY_SEPARATORS.sub(" ", text.strip().lower()).strip()


def _field_lines(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = _FIELD_LINE.match(line)
        if match is None:
            continue
        value = match.group("value").rstrip(",").strip()
        # JSON-rendered documents quote their values; the quotes are not part of the value.
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        # The first statement of a key wins: later lines are usually quotes or footnotes.
        fields.setdefault(_norm_key(match.group("key")), value)
    return fields


@dataclass(frozen=True, kw_only=True)
class _Shape:
    kind: str
    nullable: bool
    schema: Mapping[str, Any]


def _shape(schema: Any) -> _Shape:
    if not isinstance(schema, Mapping):
        return _Shape(kind="string", nullable=True, schema={})
    nullable = schema.get("nullable") is True
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            concrete = [o for o in options if not (isinstance(o, Mapping) and _is_null(o))]
            nullable = nullable or len(concrete) < len(options)
            if concrete:
                inner = _shape(concrete[0])
                return _Shape(
                    kind=inner.kind, nullable=nullable or inner.nullable, schema=inner.schema
                )
            return _Shape(kind="null", nullable=True, schema=schema)
    declared = schema.get("type")
    if isinstance(declared, list):
        nullable = nullable or "null" in declared
        kinds = [k for k in declared if k != "null"]
        kind = str(kinds[0]) if kinds else "null"
    elif isinstance(declared, str):
        kind = declared
    elif "properties" in schema:
        kind = "object"
    elif "items" in schema:
        kind = "array"
    else:
        kind = "string"
    enum = schema.get("enum")
    if isinstance(enum, list) and None in enum:
        nullable = True
    return _Shape(kind=kind, nullable=nullable or kind == "null", schema=schema)


def _is_null(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "null" or schema.get("const", ...) is None


def _words_pattern(value: str) -> re.Pattern[str] | None:
    tokens = [re.escape(t) for t in _norm_key(value).split(" ") if t]
    if not tokens:
        return None
    return re.compile(r"(?<!\w)" + r"[\s_\-]+".join(tokens) + r"(?!\w)", re.IGNORECASE)


def _match_enum(options: list[Any], raw: str) -> Any:
    wanted = _norm_key(raw)
    for option in options:
        if option is not None and _norm_key(str(option)) == wanted:
            return option
    # "Status: paid in full" still means "paid"; word boundaries keep "unpaid" from matching.
    for option in options:
        if option is None:
            continue
        pattern = _words_pattern(str(option))
        if pattern is not None and pattern.search(raw):
            return option
    return _MISSING


def _default(shape: _Shape) -> Any:
    if shape.nullable:
        return None
    enum = shape.schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "const" in shape.schema:
        return shape.schema["const"]
    return {
        "string": "",
        "integer": 0,
        "number": 0,
        "boolean": False,
        "array": [],
        "object": {},
    }.get(shape.kind)


def _parse_number(raw: str, *, integer: bool) -> Any:
    match = _NUMBER.search(raw)
    if match is None:
        return _MISSING
    try:
        value = Decimal(match.group(0).replace(",", ""))
    except InvalidOperation:
        return _MISSING
    if integer:
        # The integer part of "1,234.50" is what a human reads as the whole number.
        return int(value.to_integral_value(rounding=ROUND_DOWN))
    return float(value)


def _coerce(schema: Any, raw: str | None, fields: dict[str, str], depth: int) -> Any:
    shape = _shape(schema)
    if depth > _MAX_DEPTH:
        return _default(shape)
    if shape.kind == "object":
        properties = shape.schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        # Nested fields are looked up in the same text: documents rarely indent sub-records.
        return {
            name: _coerce(sub, fields.get(_norm_key(str(name))), fields, depth + 1)
            for name, sub in properties.items()
        }
    value = _MISSING
    if raw is not None and raw.strip() and raw.strip().lower() != "null":
        value = _coerce_scalar(shape, raw.strip(), fields, depth)
    return _default(shape) if value is _MISSING else value


def _coerce_scalar(shape: _Shape, raw: str, fields: dict[str, str], depth: int) -> Any:
    enum = shape.schema.get("enum")
    if isinstance(enum, list) and enum:
        return _match_enum(enum, raw)
    if "const" in shape.schema:
        return shape.schema["const"]
    if shape.kind == "integer":
        return _parse_number(raw, integer=True)
    if shape.kind == "number":
        return _parse_number(raw, integer=False)
    if shape.kind == "boolean":
        word = raw.split()[0].strip(".,;!").lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        return _MISSING
    if shape.kind == "array":
        return _coerce_array(shape, raw, fields, depth)
    if shape.kind == "null":
        return None
    return raw


def _coerce_array(shape: _Shape, raw: str, fields: dict[str, str], depth: int) -> list[Any]:
    item_schema = shape.schema.get("items", {})
    if _shape(item_schema).kind in {"object", "array"}:
        return []
    pieces: list[str] = []
    if raw.startswith("["):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            pieces = [p if isinstance(p, str) else dumps(p) for p in parsed]
    if not pieces:
        pieces = [p.strip().strip("\"'") for p in raw.strip("[]").split(",")]
    item_shape = _shape(item_schema)
    items = [_coerce_scalar(item_shape, p.strip(), fields, depth + 1) for p in pieces if p.strip()]
    # A piece that does not read as the item type is dropped rather than replaced by a default.
    return [i for i in items if i is not _MISSING and i is not None]


def _data_fields(data: Any, fields: dict[str, str], depth: int = 0) -> dict[str, str]:
    # Structured documents are read by key directly: their JSON text spreads lists over lines.
    if depth > _MAX_DEPTH:
        return fields
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(value, str):
                fields.setdefault(_norm_key(str(key)), value)
            elif not isinstance(value, Mapping):
                fields.setdefault(_norm_key(str(key)), dumps(value))
            _data_fields(value, fields, depth + 1)
    elif isinstance(data, list | tuple):
        for item in data:
            _data_fields(item, fields, depth + 1)
    return fields


def _local_extract(schema: Mapping[str, Any], text: str, document: Any = None) -> Any:
    fields = _data_fields(document, {})
    for key, value in _field_lines(text).items():
        fields.setdefault(key, value)
    return _coerce(schema, None, fields, 0)


def _local_classify(schema: Mapping[str, Any], text: str, document: Any) -> Any:
    answer = _local_extract(schema, text, document)
    properties = schema.get("properties")
    category = properties.get("category") if isinstance(properties, Mapping) else None
    options = _shape(category).schema.get("enum") if category is not None else None
    if not isinstance(answer, dict) or not isinstance(options, list) or not options:
        return answer
    best, best_count = options[0], 0
    for option in options:
        pattern = _words_pattern(str(option)) if option is not None else None
        count = len(pattern.findall(text)) if pattern is not None else 0
        # Strictly greater keeps the first option on ties, as the enum order is the tiebreak.
        if count > best_count:
            best, best_count = option, count
    answer["category"] = best
    return answer


def _heading_name(line: str) -> str:
    return _norm_key(line.strip().lstrip("#").strip().removesuffix(":"))


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def _local_split(schema: Mapping[str, Any], text: str, document: Any) -> Any:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return _local_extract(schema, text, document)
    names = [str(n) for n in properties]
    by_key = {_norm_key(n): n for n in names}
    lines = text.splitlines()
    headings = [
        (i, by_key[h]) for i, line in enumerate(lines) if (h := _heading_name(line)) in by_key
    ]
    parts: dict[str, list[str]] = {n: [] for n in names}
    if headings:
        bounds = [i for i, _ in headings] + [len(lines)]
        for (start, name), end in zip(headings, bounds[1:], strict=True):
            chunk = "\n".join(lines[start + 1 : end]).strip()
            if chunk:
                parts[name].append(chunk)
    else:
        paragraphs = _paragraphs(text)
        size, extra = divmod(len(paragraphs), len(names))
        cursor = 0
        for index, name in enumerate(names):
            take = size + (1 if index < extra else 0)
            parts[name] = paragraphs[cursor : cursor + take]
            cursor += take
    answer: dict[str, Any] = {}
    for name in names:
        shape = _shape(properties[name])
        part_text = "\n\n".join(parts[name])
        if shape.kind == "string":
            answer[name] = part_text
        elif shape.kind == "array" and _shape(shape.schema.get("items", {})).kind == "string":
            answer[name] = [p for chunk in parts[name] for p in _paragraphs(chunk)]
        else:
            answer[name] = _coerce(properties[name], part_text or None, {}, 1)
    return answer
