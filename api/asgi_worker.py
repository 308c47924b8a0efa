"""The gunicorn worker class of ``quorum api``: uvicorn running ``api.asgi``."""

from __future__ import annotations

import logging
from typing import Any

from uvicorn_worker import UvicornWorker

ACCESS_LOGGER = "quorum.access"


class QuorumWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "asyncio",
        "http": "h11",
        # api.asgi writes the access log itself, without query strings (uvicorn's has them).
        "access_log": False,
        "lifespan": "on",
        # Open event streams are cut after this on shutdown; clients resume (Last-Event-ID).
        "timeout_graceful_shutdown": 5,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn empties its own access logger when access_log is off: ours gets gunicorn's
        # access handlers (QUORUM's ``accesslog``), as the uvicorn one had.
        logger = logging.getLogger(ACCESS_LOGGER)
        logger.handlers = self.log.access_log.handlers
        logger.setLevel(self.log.access_log.level)
        logger.propagate = False
