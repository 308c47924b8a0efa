"""The process-wide operation registry (routes register on import of their module)."""

from __future__ import annotations

from api.routing import Registry

registry = Registry()
