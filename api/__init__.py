"""The Flask adapter: ``create_app()`` builds the HTTP API around the domain core."""

from __future__ import annotations

from api.app import create_app

__all__ = ["create_app"]
