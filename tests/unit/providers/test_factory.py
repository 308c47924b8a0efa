"""Building the configured provider."""

from __future__ import annotations

import pytest

from engine.providers.base import ModelRequest, ProviderConfig
from engine.providers.factory import build_provider
from engine.providers.local import LocalProvider


def test_build_provider_kinds() -> None:
    provider = build_provider(ProviderConfig(model="local-9"))
    assert isinstance(provider, LocalProvider)
    request = ModelRequest(task="extract", instructions="", document="", json_schema={})
    assert provider.complete(request).model == "local-9"
    provider.close()
    with pytest.raises(ValueError, match="unknown provider kind"):
        build_provider(ProviderConfig(kind="carrier-pigeon"))
    with pytest.raises(ValueError, match="base_url"):
        build_provider(ProviderConfig(kind="openai"))
