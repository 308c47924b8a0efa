"""Block executions: re-run one block of a past run against the current draft."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("executions", __name__)
