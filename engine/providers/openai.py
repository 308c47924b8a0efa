"""Chat completions with ``response_format: json_schema`` against any compatible server."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import replace
from typing import Any

import httpx

from engine.providers.base import (
    ModelRequest,
    ModelResponse,
    ProviderConfig,
    ProviderError,
    elapsed_ms,
)
from engine.providers.prompt import dumps, render_prompt
from engine.providers.redact import excerpt
from engine.providers.strict_schema import from_strict, strict_form

log = logging.getLogger(__name__)

_BACKOFF_BASE_S = 0.2
_BACKOFF_CAP_S = 2.0


class OpenAICompatibleProvider:
    """Chat completions with ``response_format: json_schema`` against any compatible server."""

    name = "openai"

    def __init__(
        self, config: ProviderConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not config.base_url.strip():
            raise ValueError("the openai provider needs a base_url (e.g. http://host:port/v1)")
        self._config = config
        self._url = config.base_url.strip().rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        # httpx.Client is thread-safe, so one pooled client serves every worker thread.
        self._client = httpx.Client(
            timeout=httpx.Timeout(config.timeout_s), headers=headers, transport=transport
        )
        self._closed = threading.Event()

    def __enter__(self) -> OpenAICompatibleProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._client.close()

    def complete(self, request: ModelRequest) -> ModelResponse:
        model = request.model or self._config.model
        system, user = render_prompt(request)
        # Strict mode takes only its own form of a schema; a schema without one is sent as
        # it is, not strict. Either way the answer is checked against the user's schema.
        strict = strict_form(request.json_schema)
        schema = request.json_schema if strict is None else strict
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": strict is not None},
            },
            # Sample 0 is the canonical answer; later consensus samples sample to disagree.
            "temperature": 0 if request.sample_index == 0 else 0.7,
            "seed": request.sample_index,
        }
        payload = dumps(body).encode("utf-8")
        retries = self._config.max_retries
        for try_index in range(retries + 1):
            try:
                response = self._call_once(payload, model)
            except ProviderError as exc:
                if not exc.retryable or try_index >= retries:
                    raise
                delay = min(_BACKOFF_BASE_S * 2**try_index, _BACKOFF_CAP_S)
                log.warning(
                    "provider call failed (%s: %s); retry %d/%d in %.1fs",
                    exc.error_type,
                    exc.message,
                    try_index + 1,
                    retries,
                    delay,
                )
                time.sleep(delay)
                continue
            if strict is None:
                return response
            return replace(response, data=from_strict(response.data, request.json_schema))
        raise AssertionError("unreachable")  # pragma: no cover

    def _call_once(self, payload: bytes, model: str) -> ModelResponse:
        if self._closed.is_set():
            raise ProviderError("provider_unavailable", "provider is closed", retryable=False)
        started = time.perf_counter()
        try:
            response = self._client.post(self._url, content=payload)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                "provider_timeout",
                # Stored where the tenant reads it: no URL (see engine.providers.redact).
                f"no answer within {self._config.timeout_s:g}s ({type(exc).__name__})",
                retryable=True,
            ) from None
        except httpx.TransportError as exc:
            raise ProviderError(
                "provider_unavailable",
                f"cannot reach the provider ({type(exc).__name__})",
                retryable=True,
            ) from None
        latency_ms = elapsed_ms(started)
        status = response.status_code
        if status >= 400:
            raise ProviderError(
                "provider_http_error",
                f"HTTP {status}: {self._excerpt(response.text)}",
                retryable=status == 429 or status >= 500,
                status_code=status,
            )
        return self._parse(response, model, latency_ms)

    def _parse(self, response: httpx.Response, model: str, latency_ms: int) -> ModelResponse:
        def bad(reason: str) -> ProviderError:
            return ProviderError(
                "provider_bad_response",
                f"{reason} (HTTP {response.status_code}): {self._excerpt(response.text)}",
                retryable=False,
                status_code=response.status_code,
            )

        try:
            envelope = response.json()
        except ValueError:
            raise bad("response body is not JSON") from None
        if not isinstance(envelope, dict):
            raise bad("response body is not a JSON object")
        choices = envelope.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise bad("response has no choices")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise bad("choices[0] has no message")
        content = message.get("content")
        if not isinstance(content, str):
            refusal = message.get("refusal")
            if isinstance(refusal, str) and refusal:
                raise bad(f"model refused: {self._excerpt(refusal)}")
            raise bad("choices[0].message.content is not a string")
        try:
            data = json.loads(_strip_code_fence(content))
        except ValueError:
            raise bad("choices[0].message.content is not valid JSON") from None
        usage = envelope.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        reported_model = envelope.get("model")
        return ModelResponse(
            data=data,
            provider=self.name,
            model=reported_model if isinstance(reported_model, str) and reported_model else model,
            prompt_tokens=_as_count(usage.get("prompt_tokens")),
            completion_tokens=_as_count(usage.get("completion_tokens")),
            latency_ms=latency_ms,
        )

    def _excerpt(self, text: str) -> str:
        return excerpt(self._redact(text))

    def _redact(self, text: str) -> str:
        # Servers sometimes echo headers back in error bodies; the key must never escape.
        key = self._config.api_key
        return text.replace(key, "***") if key else text


def _as_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(int(value), 0)


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n?\s*```\s*$", re.DOTALL)


def _strip_code_fence(content: str) -> str:
    # Some servers ignore strict mode and wrap the JSON in a markdown fence.
    match = _FENCE.match(content)
    return match.group("body") if match else content
