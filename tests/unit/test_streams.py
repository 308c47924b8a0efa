"""The event stream caps and the ASGI access log (no network)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from api.asgi import AccessLogged
from api.streams import Caps, StreamsFull


def test_caps_count_per_key_and_per_process_and_free_on_exit() -> None:
    caps = Caps(per_key=2, per_process=3)
    with caps.hold("a"), caps.hold("a"):
        with pytest.raises(StreamsFull, match="QUORUM_MAX_STREAMS_PER_KEY"), caps.hold("a"):
            pass
        with (
            caps.hold("b"),
            pytest.raises(StreamsFull, match="QUORUM_MAX_STREAMS_PER_PROCESS"),
            caps.hold("c"),
        ):
            pass
    assert caps.total == 0 and not caps.open
    with pytest.raises(RuntimeError), caps.hold("a"):
        raise RuntimeError("the stream broke")
    assert caps.total == 0


def test_the_access_log_has_no_query_string(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/workflows",
        "query_string": b"api_key=qk_secret",
        "headers": [(b"user-agent", b"probe"), (b"authorization", b"Bearer qk_secret")],
        "client": ("127.0.0.1", 5),
        "http_version": "1.1",
    }
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    with caplog.at_level(logging.INFO, logger="quorum.access"):
        asyncio.run(AccessLogged(app)(scope, receive, send))
    (line,) = [r.getMessage() for r in caplog.records if r.name == "quorum.access"]
    assert '"GET /v1/workflows HTTP/1.1" 204 0' in line and '"probe"' in line
    assert "qk_secret" not in line and "?" not in line
    assert sent[0]["status"] == 204
