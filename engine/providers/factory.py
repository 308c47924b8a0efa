"""Building the provider a deployment is configured with."""

from __future__ import annotations

from engine.providers.base import Provider, ProviderConfig
from engine.providers.local import LocalProvider
from engine.providers.openai import OpenAICompatibleProvider


def build_provider(config: ProviderConfig) -> Provider:
    kind = config.kind.strip().lower()
    if kind == "local":
        return LocalProvider(model=config.model)
    if kind == "openai":
        return OpenAICompatibleProvider(config)
    raise ValueError(f"unknown provider kind {config.kind!r} (expected 'local' or 'openai')")
