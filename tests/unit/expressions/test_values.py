"""The language's error is a ValueError, so callers may treat it as bad input."""

from __future__ import annotations

import pytest

from engine.expressions.evaluate import evaluate


def test_expression_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="division by zero"):
        evaluate("1 / 0", {})
