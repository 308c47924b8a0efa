"""The Quorum Python client (sync and asyncio), on httpx.

>>> from quorum.client import Client
>>> with Client("http://127.0.0.1:8000", api_key) as client:
...     wf = client.workflows.create("doubler", blocks, edges)
...     run = client.runs.create(wf.id, {"n": 21})
...     run = client.runs.wait(run.id, timeout=60)

Error answers raise :class:`QuorumError` subclasses (``NotFound``, ``Conflict``,
``ValidationFailed``...); 503 and 429 answers are retried (see :class:`Client`).
"""

from quorum.client.aio import AsyncClient
from quorum.client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    NotFound,
    PayloadTooLarge,
    QuorumError,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    WaitTimeout,
)
from quorum.client.models import (
    TERMINAL_LIFECYCLE,
    TERMINAL_RUN,
    BlockExecution,
    Comment,
    Event,
    IoPair,
    Lifecycle,
    Page,
    Progress,
    Run,
    Step,
    Version,
    VersionSummary,
    Workflow,
)
from quorum.client.sync import Client

__all__ = [
    "TERMINAL_LIFECYCLE",
    "TERMINAL_RUN",
    "AsyncClient",
    "BadRequest",
    "BlockExecution",
    "Client",
    "Comment",
    "Conflict",
    "ConnectionFailed",
    "Event",
    "IoPair",
    "Lifecycle",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "Progress",
    "QuorumError",
    "RateLimited",
    "Run",
    "ServiceUnavailable",
    "Step",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
    "Version",
    "VersionSummary",
    "WaitTimeout",
    "Workflow",
]
