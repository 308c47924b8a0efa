"""Pluggable model providers: the only place a block's prompt meets a model.

Two implementations share one prompt renderer: :class:`OpenAICompatibleProvider` speaks the
chat-completions protocol over HTTP, and :class:`LocalProvider` answers heuristically with no
network so the embedded default and the demos work on a bare machine.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from engine.redact import excerpt
from engine.strict_schema import from_strict, strict_form

if TYPE_CHECKING:
    from engine.settings import Settings

log = logging.getLogger(__name__)

ERROR_TYPES = frozenset(
    {"provider_timeout", "provider_http_error", "provider_bad_response", "provider_unavailable"}
)

_BACKOFF_BASE_S = 0.2
_BACKOFF_CAP_S = 2.0


@dataclass(frozen=True, kw_only=True)
class ModelRequest:
    task: str
    instructions: str
    document: Any
    json_schema: Mapping[str, Any]
    model: str | None = None
    # Consensus attempt index; providers may vary sampling with it, the local one does not.
    attempt: int = 0


@dataclass(frozen=True, kw_only=True)
class ModelResponse:
    data: Any
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


class ProviderError(Exception):
    """A model call failed; ``retryable`` tells the caller whether trying again can help."""

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
    ) -> None:
        if error_type not in ERROR_TYPES:
            raise ValueError(f"unknown provider error type {error_type!r}")
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.retryable = retryable
        self.status_code = status_code

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments defeat Exception's default pickling, and Celery pickles errors.
        return (
            _rebuild_provider_error,
            (self.error_type, self.message, self.retryable, self.status_code),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "error_type": self.error_type,
            "message": self.message,
            "retryable": self.retryable,
            "status_code": self.status_code,
        }


def _rebuild_provider_error(
    error_type: str, message: str, retryable: bool, status_code: int | None
) -> ProviderError:
    return ProviderError(error_type, message, retryable=retryable, status_code=status_code)


class Provider(Protocol):
    name: str

    def complete(self, request: ModelRequest) -> ModelResponse: ...

    def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class ProviderConfig:
    kind: str = "local"
    base_url: str = ""
    # Kept out of repr so logging a config can never leak the key.
    api_key: str = field(default="", repr=False)
    model: str = "local-1"
    timeout_s: float = 60.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.max_retries < 0:
            raise ValueError("max_retries must not be negative")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ProviderConfig:
        values: dict[str, Any] = {
            "kind": settings.provider,
            "base_url": settings.provider_base_url,
            "api_key": settings.provider_api_key,
            "model": settings.provider_model,
            "timeout_s": settings.provider_timeout_s,
        }
        values.update(overrides)
        return cls(**values)


def build_provider(config: ProviderConfig) -> Provider:
    kind = config.kind.strip().lower()
    if kind == "local":
        return LocalProvider(model=config.model)
    if kind == "openai":
        return OpenAICompatibleProvider(config)
    raise ValueError(f"unknown provider kind {config.kind!r} (expected 'local' or 'openai')")


# --------------------------------------------------------------------------- prompt


_TASK_GUIDES = {
    "extract": (
        "Extract the fields described by the JSON schema from the document. "
        "Use null for a nullable field the document does not state; never invent values."
    ),
    "classify": (
        "Classify the document: set `category` to the one value from the schema's enum "
        "that fits the document best."
    ),
    "split": (
        "Split the document into the parts named by the schema's properties. "
        "Each part holds, verbatim, the document text that belongs to it."
    ),
}


def render_prompt(request: ModelRequest) -> tuple[str, str]:
    """Return ``(system, user)`` messages; both providers use it so token counts agree."""
    guide = _TASK_GUIDES.get(request.task, f"Perform the task {request.task!r} on the document.")
    system_parts = [
        "You are a careful document-processing model.",
        guide,
        "Answer with one JSON value that fits the JSON schema given below, "
        "with no prose and no code fences.",
    ]
    if request.instructions.strip():
        system_parts.append("Instructions:\n" + request.instructions.strip())
    system = "\n\n".join(system_parts)
    user = (
        "JSON schema:\n"
        + _dumps(request.json_schema, indent=2)
        + "\n\nDocument:\n"
        + document_text(request.document)
    )
    return system, user


def document_text(document: Any) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, bytes | bytearray):
        return bytes(document).decode("utf-8", errors="replace")
    return _dumps(document, indent=2)


def _json_default(value: Any) -> Any:
    # Schemas arrive as read-only Mappings, which json refuses; anything else exotic becomes text.
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=_json_default)


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


# --------------------------------------------------------------------------- HTTP provider


class OpenAICompatibleProvider:
    """Chat completions with ``response_format: json_schema`` against any compatible server."""

    name = "openai"

    def __init__(
        self, config: ProviderConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not config.base_url.strip():
            raise ValueError("the openai provider needs a base_url (e.g. http://host:port/v1)")
        self._config = config
        self._url = config.base_url.strip().rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        # httpx.Client is thread-safe, so one pooled client serves every worker thread.
        self._client = httpx.Client(
            timeout=httpx.Timeout(config.timeout_s), headers=headers, transport=transport
        )
        self._closed = threading.Event()

    def __enter__(self) -> OpenAICompatibleProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._client.close()

    def complete(self, request: ModelRequest) -> ModelResponse:
        model = request.model or self._config.model
        system, user = render_prompt(request)
        # Strict mode takes only its own form of a schema; a schema without one is sent as
        # it is, not strict. Either way the answer is checked against the user's schema.
        strict = strict_form(request.json_schema)
        schema = request.json_schema if strict is None else strict
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": strict is not None},
            },
            # Attempt 0 is the canonical answer; later consensus attempts sample to disagree.
            "temperature": 0 if request.attempt == 0 else 0.7,
            "seed": request.attempt,
        }
        payload = _dumps(body).encode("utf-8")
        retries = self._config.max_retries
        for try_index in range(retries + 1):
            try:
                response = self._call_once(payload, model)
            except ProviderError as exc:
                if not exc.retryable or try_index >= retries:
                    raise
                delay = min(_BACKOFF_BASE_S * 2**try_index, _BACKOFF_CAP_S)
                log.warning(
                    "provider call failed (%s: %s); retry %d/%d in %.1fs",
                    exc.error_type,
                    exc.message,
                    try_index + 1,
                    retries,
                    delay,
                )
                time.sleep(delay)
                continue
            if strict is None:
                return response
            return replace(response, data=from_strict(response.data, request.json_schema))
        raise AssertionError("unreachable")  # pragma: no cover

    def _call_once(self, payload: bytes, model: str) -> ModelResponse:
        if self._closed.is_set():
            raise ProviderError("provider_unavailable", "provider is closed", retryable=False)
        started = time.perf_counter()
        try:
            response = self._client.post(self._url, content=payload)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                "provider_timeout",
                # Stored where the tenant reads it: no URL (see engine.redact).
                f"no answer within {self._config.timeout_s:g}s ({type(exc).__name__})",
                retryable=True,
            ) from None
        except httpx.TransportError as exc:
            raise ProviderError(
                "provider_unavailable",
                f"cannot reach the provider ({type(exc).__name__})",
                retryable=True,
            ) from None
        latency_ms = _elapsed_ms(started)
        status = response.status_code
        if status >= 400:
            raise ProviderError(
                "provider_http_error",
                f"HTTP {status}: {self._excerpt(response.text)}",
                retryable=status == 429 or status >= 500,
                status_code=status,
            )
        return self._parse(response, model, latency_ms)

    def _parse(self, response: httpx.Response, model: str, latency_ms: int) -> ModelResponse:
        def bad(reason: str) -> ProviderError:
            return ProviderError(
                "provider_bad_response",
                f"{reason} (HTTP {response.status_code}): {self._excerpt(response.text)}",
                retryable=False,
                status_code=response.status_code,
            )

        try:
            envelope = response.json()
        except ValueError:
            raise bad("response body is not JSON") from None
        if not isinstance(envelope, dict):
            raise bad("response body is not a JSON object")
        choices = envelope.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise bad("response has no choices")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise bad("choices[0] has no message")
        content = message.get("content")
        if not isinstance(content, str):
            refusal = message.get("refusal")
            if isinstance(refusal, str) and refusal:
                raise bad(f"model refused: {self._excerpt(refusal)}")
            raise bad("choices[0].message.content is not a string")
        try:
            data = json.loads(_strip_code_fence(content))
        except ValueError:
            raise bad("choices[0].message.content is not valid JSON") from None
        usage = envelope.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        reported_model = envelope.get("model")
        return ModelResponse(
            data=data,
            provider=self.name,
            model=reported_model if isinstance(reported_model, str) and reported_model else model,
            prompt_tokens=_as_count(usage.get("prompt_tokens")),
            completion_tokens=_as_count(usage.get("completion_tokens")),
            latency_ms=latency_ms,
        )

    def _excerpt(self, text: str) -> str:
        return excerpt(self._redact(text))

    def _redact(self, text: str) -> str:
        # Servers sometimes echo headers back in error bodies; the key must never escape.
        key = self._config.api_key
        return text.replace(key, "***") if key else text


def _as_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(int(value), 0)


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n?\s*```\s*$", re.DOTALL)


def _strip_code_fence(content: str) -> str:
    # Some servers ignore strict mode and wrap the JSON in a markdown fence.
    match = _FENCE.match(content)
    return match.group("body") if match else content


# --------------------------------------------------------------------------- local provider


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
        answer_text = _dumps(data)
        return ModelResponse(
            data=data,
            provider=self.name,
            model=request.model or self._model,
            prompt_tokens=len(system.split()) + len(user.split()),
            completion_tokens=len(answer_text.split()),
            latency_ms=_elapsed_ms(started),
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
            pieces = [p if isinstance(p, str) else _dumps(p) for p in parsed]
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
                fields.setdefault(_norm_key(str(key)), _dumps(value))
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
