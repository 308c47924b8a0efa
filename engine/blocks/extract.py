"""extract: a JSON object read from the document, fitting the block's schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.blocks.base import Err, check_schema
from engine.blocks.model import ModelBlock


class ExtractBlock(ModelBlock):
    type = "extract"
    task = "extract"

    def check_model(self, config: Mapping[str, Any], err: Err) -> None:
        schema = config.get("schema")
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            err(("schema",), "a JSON schema of type 'object' is required")
        else:
            check_schema(schema, err)
