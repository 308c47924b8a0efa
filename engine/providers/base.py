"""What every provider speaks: the request, the response, its errors, the protocol, and
the configuration a provider is built from."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.settings import Settings

ERROR_TYPES = frozenset(
    {"provider_timeout", "provider_http_error", "provider_bad_response", "provider_unavailable"}
)


@dataclass(frozen=True, kw_only=True)
class ModelRequest:
    task: str
    instructions: str
    document: Any
    json_schema: Mapping[str, Any]
    model: str | None = None
    # Which consensus sample this is; providers may vary sampling with it, the local one
    # does not.
    sample_index: int = 0


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


def elapsed_ms(started: float) -> int:
    """Milliseconds since ``started`` (a :func:`time.perf_counter` reading)."""
    return int((time.perf_counter() - started) * 1000)
