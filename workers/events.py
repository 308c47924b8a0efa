"""The EventBus port on Redis pub/sub: a nudge for SSE listeners, never the record."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

import redis

from engine.events import EventBus, PollingBus
from engine.settings import Settings

log = logging.getLogger("quorum.events")
CHANNEL = "quorum:run:{}"


class RedisBus:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def notify(self, run_ids: Iterable[str]) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for run_id in run_ids:
                    pipe.publish(CHANNEL.format(run_id), "1")
                pipe.execute()
        except redis.RedisError:
            log.debug("event notification failed; listeners will poll", exc_info=True)

    def wait(self, run_id: str, timeout_s: float) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANNEL.format(run_id))
            pubsub.get_message(timeout=timeout_s)
        except redis.RedisError:
            PollingBus().wait(run_id, timeout_s)
        finally:
            with contextlib.suppress(redis.RedisError):
                pubsub.close()

    def close(self) -> None:
        self.client.close()


def event_bus(settings: Settings) -> EventBus:
    url = settings.redis_url or (
        settings.broker_url if settings.broker_url.startswith(("redis://", "rediss://")) else ""
    )
    return RedisBus(url) if url else PollingBus()
