"""The prompt both providers send (so their token counts agree), and JSON as they write it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.providers.base import ModelRequest

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
        + dumps(request.json_schema, indent=2)
        + "\n\nDocument:\n"
        + document_text(request.document)
    )
    return system, user


def document_text(document: Any) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, bytes | bytearray):
        return bytes(document).decode("utf-8", errors="replace")
    return dumps(document, indent=2)


def _json_default(value: Any) -> Any:
    # Schemas arrive as read-only Mappings, which json refuses; anything else exotic becomes text.
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=_json_default)
