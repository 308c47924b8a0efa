"""Short, URL-free excerpts of text from outside (a provider's error body) for storage.

A stored error is read by the run's organization, which must not learn the deployment's
endpoints, internal host names or whatever a provider echoes back (headers, other
tenants' prompts): keep the type and status elsewhere, and only a short excerpt here.
"""

from __future__ import annotations

import re

EXCERPT_CHARS = 160
# Any scheme://... and bare host:port/paths of internal services.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}://[^\s\"'<>]*")
_HOST_PORT = re.compile(r"\b(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+:\d{2,5}\b[^\s\"'<>]*")
_SPACE = re.compile(r"\s+")


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` without URLs or host:port, whitespace collapsed, at most ``limit`` chars."""
    # Cut generously first: the regular expressions then run on bounded input.
    cleaned = _URL.sub("[url]", text[: limit * 8])
    cleaned = _HOST_PORT.sub("[host]", cleaned)
    cleaned = _SPACE.sub(" ", cleaned).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
