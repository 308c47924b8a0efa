"""kombu's Redis transport, fixed so that a worker rides out a Redis restart.

With kombu 5.7.0 and celery 5.7.0, a worker that loses Redis while it holds an
unacknowledged message (a task running under ``acks_late``) and waits in ``BRPOP`` for
the next one could end for good: ``Unrecoverable error: AttributeError("'NoneType' object
has no attribute 'hostname'")``. The path, read in kombu's and celery's source:

1. celery's ``Consumer.on_connection_error_after_connected`` calls ``Connection.collect()``.
   Closing the default channel there first drains the pending ``BRPOP`` reply
   (``Channel.close`` -> ``_brpop_read``), which raises the connection error before the
   channel is marked closed; ``maybe_close_channel`` swallows it, but
   ``Connection._do_close_self`` does not forget the channel. ``collect()`` then detaches
   the transport: ``transport.client = None``.
2. The consumer then calls ``connection.close()``, which closes that same channel again.
   This time it gets through: it drops its connection pools and restores the unacked
   messages (``QoS.restore_unacked_once`` -> ``restore_unacked``), which needs a new pool,
   built from ``_connparams()``, which reads ``self.connection.client.hostname`` from the
   detached transport: ``AttributeError``. That is not a connection error, so
   ``ignore_errors`` lets it through and the worker's blueprint stops ("Unrecoverable").

The same detached channel fails once more when the task that was running finishes and
acknowledges its message (``acks_late``): ``QoS.ack`` -> ``_remove_from_indices`` -> a new
pool -> ``_connparams()`` on a channel whose transport is gone (``self.connection`` is
None after ``close_channel``): ``AttributeError`` again, raised in the event loop.

The fix, in two parts: a QoS that does not try to restore unacked messages through a
transport that was already detached, and a channel whose ``_connparams()`` raises a
connection error instead of ``AttributeError`` once it is detached, which celery and kombu
already handle (the late acknowledgement is logged as failed, the worker goes on). Nothing
is lost: such messages stay in Redis's unacked index and kombu restores them after the
visibility timeout (unless Redis lost them in its restart), where the claim drops them as
done; and the outbox sweeper publishes again every row that is still open
(``engine.outbox``). The transport is selected for ``redis://`` brokers by
``workers.celery_app``.

One more change, for speed: kombu builds a new ``redis.Redis`` client (copying its table of
about 170 response callbacks) for every ``conn_or_acquire``, that is for every publish
batch, so once per API request that publishes. The channel keeps one client per
connection pool instead: a client holds no connection of its own (each command borrows
one from the pool), so it is safe to share between threads, and a pool that kombu
replaces after a connection error gets a new client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError

log = logging.getLogger("quorum.broker")

TRANSPORT = "workers.broker:Transport"


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> None:
        transport = getattr(self.channel, "connection", None)
        if client is None and getattr(transport, "client", None) is None:
            if self._delivered:
                log.warning(
                    "broker connection already torn down: %d unacknowledged message(s) "
                    "left to the visibility timeout and the outbox",
                    len(self._delivered),
                )
            self._delivered.clear()
            return
        super().restore_unacked(client)


class Channel(kombu_redis.Channel):
    QoS = QoS
    _shared_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool  # kombu's: rebuilt after _disconnect_pools; raises once detached
        shared = self._shared_client
        if shared is None or shared.connection_pool is not pool:
            shared = self._shared_client = self._create_client()
        yield shared

    def _connparams(self, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or transport.client is None:
            raise ConnectionError("the channel's broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
