"""The EventBus port on Redis pub/sub: a nudge for SSE listeners, never the record."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

import redis
from redis.client import PubSub

from engine.events import EventBus, PollingBus
from engine.settings import Settings

log = logging.getLogger("quorum.events")
CHANNEL = "quorum:run:{}"


class Subscription:
    """A run's channel, subscribed until closed; falls back to polling if Redis fails."""

    def __init__(self, client: redis.Redis, run_id: str) -> None:
        self.run_id = run_id
        self.pubsub: PubSub | None = client.pubsub(ignore_subscribe_messages=True)
        try:
            self.pubsub.subscribe(CHANNEL.format(run_id))
        except redis.RedisError:
            log.debug("subscription failed; polling", exc_info=True)
            self.close()

    def wait(self, timeout_s: float) -> None:
        """Return on a notification (all pending ones are consumed) or after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        if self.pubsub is None:
            PollingBus().wait(self.run_id, timeout_s)
            return
        try:
            # The subscription's own confirmation reads as None: keep waiting past it.
            while (remaining := deadline - time.monotonic()) > 0:
                if self.pubsub.get_message(timeout=remaining) is not None:
                    while self.pubsub.get_message(timeout=0) is not None:
                        pass
                    return
        except (redis.RedisError, OSError, ValueError):  # ValueError: a client closed under us
            log.debug("subscription lost; polling", exc_info=True)
            self.close()
            PollingBus().wait(self.run_id, max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self.pubsub.close()
            self.pubsub = None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
        with self.listen(run_id) as subscription:
            subscription.wait(timeout_s)

    def listen(self, run_id: str) -> Subscription:
        """One subscription for a whole follow: no notification is lost between waits."""
        return Subscription(self.client, run_id)

    def close(self) -> None:
        self.client.close()


def redis_url_of(settings: Settings) -> str:
    """Where run notifications go: ``redis_url``, else a Redis broker, else nowhere."""
    return settings.redis_url or (
        settings.broker_url if settings.broker_url.startswith(("redis://", "rediss://")) else ""
    )


def event_bus(settings: Settings) -> EventBus:
    url = redis_url_of(settings)
    return RedisBus(url) if url else PollingBus()
