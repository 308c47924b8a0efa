"""Provider errors: typed, and whole after a trip through pickle (Celery pickles them)."""

from __future__ import annotations

import pickle

import pytest

from engine.providers.base import ProviderError


def test_provider_error_survives_pickling() -> None:
    error = ProviderError("provider_http_error", "HTTP 503", retryable=True, status_code=503)
    copy = pickle.loads(pickle.dumps(error))
    assert copy.as_dict() == error.as_dict()
    assert str(copy) == "HTTP 503"
    with pytest.raises(ValueError):
        ProviderError("teapot", "no", retryable=False)
