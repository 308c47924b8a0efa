"""The OpenAI-compatible provider against a real chat-completions server on loopback."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from engine.providers.base import ModelRequest, ProviderConfig, ProviderError
from engine.providers.factory import build_provider
from engine.providers.openai import OpenAICompatibleProvider
from engine.providers.strict_schema import strict_form
from tests.support.chat_server import (
    ChatReply,
    ChatServer,
    chat_server_process,
    cycle_answers,
    in_order,
)

API_KEY = "sk-test-7f3a9c-very-secret"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"total": {"type": "integer"}},
    "required": ["total"],
    "additionalProperties": False,
}


def make_request(**overrides: Any) -> ModelRequest:
    values: dict[str, Any] = {
        "task": "extract",
        "instructions": "Read the invoice total.",
        "document": "Total: 42",
        "json_schema": SCHEMA,
    }
    values.update(overrides)
    return ModelRequest(**values)


@contextmanager
def provider_for(base_url: str, **overrides: Any) -> Iterator[OpenAICompatibleProvider]:
    values: dict[str, Any] = {
        "kind": "openai",
        "base_url": base_url,
        "api_key": API_KEY,
        "model": "test-model",
        "timeout_s": 5.0,
        "max_retries": 2,
    }
    values.update(overrides)
    with OpenAICompatibleProvider(ProviderConfig(**values)) as provider:
        yield provider


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_success_records_answer_usage_and_latency() -> None:
    responder = in_order(
        ChatReply(content={"total": 42}, delay_s=0.05, prompt_tokens=120, completion_tokens=9)
    )
    with ChatServer(responder) as server, provider_for(server.base_url) as provider:
        response = provider.complete(make_request())

    assert response.data == {"total": 42}
    assert response.provider == "openai"
    assert response.model == "test-model"
    assert response.prompt_tokens == 120
    assert response.completion_tokens == 9
    assert isinstance(response.latency_ms, int)
    assert response.latency_ms >= 50


def test_model_reported_by_server_wins_and_missing_usage_is_zero() -> None:
    reply = ChatReply(
        content={"total": 1}, model="served-model", prompt_tokens=None, completion_tokens=None
    )
    with ChatServer(in_order(reply)) as server, provider_for(server.base_url) as provider:
        response = provider.complete(make_request())

    assert response.model == "served-model"
    assert (response.prompt_tokens, response.completion_tokens) == (0, 0)


def test_request_body_shape_and_auth_header() -> None:
    with ChatServer(cycle_answers([{"total": 1}])) as server:
        with provider_for(server.base_url) as provider:
            provider.complete(make_request())
            provider.complete(make_request(model="override-model", sample_index=3))
        with provider_for(server.base_url, api_key="") as anonymous:
            anonymous.complete(make_request())
        first, second, third = server.requests
        authorizations = server.authorizations

    assert first["model"] == "test-model"
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert "Read the invoice total." in first["messages"][0]["content"]
    assert "Total: 42" in first["messages"][1]["content"]
    assert first["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }
    assert (first["temperature"], first["seed"]) == (0, 0)
    assert second["model"] == "override-model"
    assert (second["temperature"], second["seed"]) == (0.7, 3)
    assert third["model"] == "test-model"
    assert authorizations == [f"Bearer {API_KEY}", f"Bearer {API_KEY}", None]


OPTIONAL_FIELDS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "total": {"type": "number"},
        "vendor": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "vat": {"type": "string"}},
            "required": ["name"],
        },
        "lines": {
            "type": "array",
            "items": {"type": "object", "properties": {"sku": {"type": "string"}}},
        },
    },
    "required": ["total"],
}


def test_strict_mode_gets_a_strict_form_and_the_answer_is_mapped_back() -> None:
    # What a strict server answers: every property present, the absent ones null.
    strict_answer = {
        "total": 12,
        "vendor": {"name": "ACME", "vat": None},
        "lines": [{"sku": None}, {"sku": "A"}],
    }
    free_form = {"type": "object", "properties": {"meta": {"type": "object"}}}
    with ChatServer(in_order(ChatReply(content=strict_answer), ChatReply(content={}))) as server:
        with provider_for(server.base_url) as provider:
            response = provider.complete(make_request(json_schema=OPTIONAL_FIELDS))
            provider.complete(make_request(json_schema=free_form))
        strict_request, free_request = server.requests

    sent = strict_request["response_format"]["json_schema"]
    assert sent["strict"] is True
    assert sent["schema"] == strict_form(OPTIONAL_FIELDS)
    assert sent["schema"]["required"] == ["total", "vendor", "lines"]
    assert sent["schema"]["additionalProperties"] is False
    assert sent["schema"]["properties"]["vendor"]["required"] == ["name", "vat"]
    assert response.data == {"total": 12, "vendor": {"name": "ACME"}, "lines": [{}, {"sku": "A"}]}
    # A free-form object has no strict form: it is sent as it is, without strict mode.
    assert free_request["response_format"]["json_schema"] == {
        "name": "answer",
        "schema": free_form,
        "strict": False,
    }


def test_server_error_then_success_is_retried() -> None:
    responder = in_order(ChatReply(status=500), ChatReply(content={"total": 7}))
    with ChatServer(responder) as server, provider_for(server.base_url) as provider:
        response = provider.complete(make_request())
        assert len(server.requests) == 2

    assert response.data == {"total": 7}


def test_rate_limit_exhausts_retries_and_stays_retryable() -> None:
    with (
        ChatServer(in_order(ChatReply(status=429))) as server,
        provider_for(server.base_url, max_retries=1) as provider,
        pytest.raises(ProviderError) as caught,
    ):
        provider.complete(make_request())
    assert len(server.requests) == 2

    assert caught.value.error_type == "provider_http_error"
    assert caught.value.retryable is True
    assert caught.value.status_code == 429
    assert "429" in caught.value.message


def test_client_error_is_not_retried_and_body_is_truncated() -> None:
    reply = ChatReply(status=400, body="x" * 5000)
    with ChatServer(in_order(reply)) as server, provider_for(server.base_url) as provider:
        with pytest.raises(ProviderError) as caught:
            provider.complete(make_request())
        assert len(server.requests) == 1

    assert caught.value.error_type == "provider_http_error"
    assert caught.value.retryable is False
    assert "400" in caught.value.message
    assert caught.value.message.count("x") <= 500


def test_errors_keep_type_status_and_a_short_excerpt_without_urls() -> None:
    # What a failing provider says ends up in a step the tenant reads.
    body = "upstream http://10.1.2.3:8080/internal/v1 refused: " + "secret-prompt " * 100
    slow = ChatReply(content={"total": 1}, delay_s=3.0)
    for reply, timeout_s in ((ChatReply(status=502, body=body), 5.0), (slow, 0.2)):
        with (
            ChatServer(in_order(reply)) as server,
            provider_for(server.base_url, max_retries=0, timeout_s=timeout_s) as provider,
            pytest.raises(ProviderError) as caught,
        ):
            host = server.base_url.split("//")[1].split("/")[0]
            provider.complete(make_request())
        message = caught.value.message
        assert host not in message and "://" not in message
        assert "10.1.2.3" not in message and len(message) <= 200
    unreachable = f"http://127.0.0.1:{closed_port()}/v1"
    with (
        provider_for(unreachable, max_retries=0) as provider,
        pytest.raises(ProviderError) as caught,
    ):
        provider.complete(make_request())
    assert "127.0.0.1" not in caught.value.message


def test_slow_server_times_out() -> None:
    with (
        ChatServer(in_order(ChatReply(content={"total": 1}, delay_s=3.0))) as server,
        provider_for(server.base_url, timeout_s=0.2, max_retries=0) as provider,
        pytest.raises(ProviderError) as caught,
    ):
        provider.complete(make_request())

    assert caught.value.error_type == "provider_timeout"
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    "reply",
    [
        ChatReply(content="this is {not json", raw=True),
        ChatReply(body='{"id": "chatcmpl-1", "choices": []}'),
        ChatReply(body="<html>gateway</html>"),
        ChatReply(body='{"choices": [{"message": {"role": "assistant"}}]}'),
    ],
    ids=["bad-content", "no-choices", "not-json", "no-content"],
)
def test_malformed_answer_is_a_bad_response(reply: ChatReply) -> None:
    with ChatServer(in_order(reply)) as server, provider_for(server.base_url) as provider:
        with pytest.raises(ProviderError) as caught:
            provider.complete(make_request())
        assert len(server.requests) == 1

    assert caught.value.error_type == "provider_bad_response"
    assert caught.value.retryable is False


def test_connection_refused_is_unavailable() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    with provider_for(base_url, max_retries=1) as provider, pytest.raises(ProviderError) as caught:
        provider.complete(make_request())

    assert caught.value.error_type == "provider_unavailable"
    assert caught.value.retryable is True


def test_api_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    echo = f'{{"error": "bad credentials: Bearer {API_KEY}"}}'
    responder = in_order(ChatReply(status=503, body=echo), ChatReply(status=401, body=echo))
    caplog.set_level(logging.DEBUG)
    with (
        ChatServer(responder) as server,
        provider_for(server.base_url) as provider,
        pytest.raises(ProviderError) as caught,
    ):
        provider.complete(make_request())

    assert caught.value.status_code == 401
    assert "bad credentials" in caught.value.message
    for text in (caught.value.message, str(caught.value), repr(caught.value), caplog.text):
        assert API_KEY not in text
    config = ProviderConfig(kind="openai", base_url="http://127.0.0.1:9/v1", api_key=API_KEY)
    assert API_KEY not in repr(config)


def test_parallel_calls_share_one_client() -> None:
    answers = [{"total": i} for i in range(4)]
    with (
        ChatServer(cycle_answers(answers, delay_s=0.05)) as server,
        provider_for(server.base_url) as provider,
        ThreadPoolExecutor(4) as pool,
    ):
        results = list(
            pool.map(lambda i: provider.complete(make_request(sample_index=i)).data, range(8))
        )

    assert results == [answers[i % 4] for i in range(8)]


def test_build_provider_and_close_is_idempotent() -> None:
    with ChatServer(cycle_answers([{"total": 5}])) as server:
        provider = build_provider(ProviderConfig(kind="openai", base_url=server.base_url))
        try:
            assert provider.name == "openai"
            assert provider.complete(make_request()).data == {"total": 5}
        finally:
            provider.close()
            provider.close()


def test_standalone_server_process_answers_by_seed() -> None:
    answers = [{"total": 0}, {"total": 1}, {"total": 2}]
    with chat_server_process(answers) as base_url, provider_for(base_url) as provider:
        seen = [provider.complete(make_request(sample_index=i)).data for i in (0, 1, 2, 4)]

    assert seen == [{"total": 0}, {"total": 1}, {"total": 2}, {"total": 1}]
