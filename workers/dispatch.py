"""The core's Dispatcher port on Celery: one producer, many messages, no result backend.

A fan-out publishes hundreds of messages at once. ``send_task`` per message pays a broker
round trip per message (two with the task-sent event) and, mostly, Python: routing,
options, headers and reprs rebuilt for every message. On Redis, a dispatch builds each
task name's message once with Celery's own ``create_task_message``, varies only the task
id and args per row, and hands the messages to kombu's Redis publish batch, which routes
each one as ``basic_publish`` does (queue list, priority list, fanout topic) and writes them
all in one pipeline. Everything else keeps ``send_task`` as is: other transports (AMQP,
the embedded filesystem broker), delayed work, routes other than a plain queue, compression,
and publish signal receivers.

The templates outlive a dispatch: building one (``create_task_message``, the route, the
queue's declaration) cost more than the message itself, on every request that publishes.
They are kept per thread, because send_task's ``reply_to`` is the calling thread's
(``app.thread_oid``), and per process, because its ``origin`` names the pid. The producer
and its connection come from Celery's producer pool, which already keeps them across
dispatches (thread-safe, and rebuilt by kombu after a connection error); the Redis client
a batch writes through is kept by the channel (workers.broker).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from celery import Celery, signals
from celery.events import Event
from celery.utils.saferepr import saferepr
from celery.utils.time import utcoffset
from kombu import Producer, Queue
from kombu.entity import maybe_delivery_mode
from kombu.serialization import dumps

from engine.ports import Work, WorkKind
from workers.names import TASK_EXECUTION, TASK_SAMPLE, TASK_STEP

TASK_FOR = {
    WorkKind.STEP: TASK_STEP,
    WorkKind.EXECUTION: TASK_EXECUTION,
    WorkKind.SAMPLE: TASK_SAMPLE,
}

# Redis commands per pipeline round trip: a fan-out of 1,000 (a message and a task-sent
# event each) is one round trip, and a big outbox sweep goes out in bounded chunks.
BATCH_COMMANDS = 4096

# The keys of task_publish_retry_policy that say how to (re)connect.
RETRY_KEYS = {"max_retries", "interval_start", "interval_step", "interval_max"}


def task_id(work: Work) -> str:
    # Deterministic ids: a re-published row keeps its task id, so Flower shows one task
    # and a revoke reaches every copy of the message.
    return f"{work.kind}-{work.id}"


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self._local = threading.local()

    def templates(self) -> dict[str, _Template | None]:
        """This thread's message templates by task name (None: send_task's to route)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.pid, local.templates = os.getpid(), {}
        templates: dict[str, _Template | None] = local.templates
        return templates

    def dispatch(self, work: Sequence[Work]) -> None:
        """Publish one message per row; raise unless the broker took every one."""
        if not work:
            return
        # One connection and channel for the whole batch: no connection checkout per message.
        with self.app.producer_or_acquire() as producer:
            # Connect, or fail, within the publish retry policy as send_task does, not
            # kombu's default of retrying for seconds: a request must not hang on it.
            policy = self.app.conf.task_publish_retry_policy or {}
            producer.connection.ensure_connection(
                **{k: policy[k] for k in RETRY_KEYS & set(policy)}
            )
            rest = (
                _RedisBatch(self.app, producer, self.templates()).publish(work)
                if self._batches(producer)
                else work
            )
            for w in rest:
                self.app.send_task(
                    TASK_FOR[w.kind],
                    args=[w.id],
                    task_id=task_id(w),
                    producer=producer,
                    ignore_result=True,
                    countdown=w.delay_s or None,
                )

    def _batches(self, producer: Producer) -> bool:
        conf = self.app.conf
        return (
            # kombu's own test: the transport batches, and no client-side retry could
            # replay a pipeline ambiguously.
            producer.supports_batch_publish
            and hasattr(producer.channel, "create_publish_batch")
            # What a template does not reproduce: compressed bodies, a priority inherited
            # from the calling task, and per-message publish signals.
            and not conf.task_compression
            and not conf.task_inherit_parent_priority
            and not signals.before_task_publish.receivers
            and not signals.after_task_publish.receivers
            and not signals.task_sent.receivers
        )

    def close(self) -> None:
        self.app.close()

    def revoke(self, work: Sequence[Work]) -> None:
        if work:
            self.app.control.revoke([task_id(w) for w in work], terminate=True, signal="SIGTERM")


class _Template:
    """A task name's message as ``send_task`` builds it, for any dispatch of one thread.

    What varies per message: the task id and args; per dispatch: the ids of the task it
    is sent from (``root_id``, ``parent_id``); the rest is fixed for the thread.
    """

    def __init__(self, app: Celery, name: str, queue: Queue) -> None:
        conf = app.conf
        headers, properties, body, sent = app.amqp.create_task_message(
            "",
            name,
            [],
            None,
            reply_to=app.thread_oid,
            create_sent_event=conf.task_send_sent_event,
            ignore_result=True,
        )
        self.headers: dict[str, Any] = headers
        # What send_task_message adds: a direct queue is published to on the anonymous
        # exchange, the queue name as routing key, persistent unless its exchange says not.
        self.properties: dict[str, Any] = {
            **properties,
            "delivery_mode": maybe_delivery_mode(
                queue.exchange.delivery_mode or conf.task_default_delivery_mode
            ),
        }
        self.kwargs, self.embed = body[1], body[2]
        self.sent: dict[str, Any] | None = sent
        if sent is not None:
            sent.update(queue=queue.name, exchange="", routing_key=queue.name)
        self.queue = queue.name
        self.queue_entity = queue
        self.serializer = conf.task_serializer
        self.repr_args = (app.amqp.argsrepr_maxsize, conf.task_repr_maxlevels)
        # The channel the queue was last declared on (kombu caches declarations per
        # connection; this skips even asking it while the thread keeps its channel).
        self.declared_on: Any = None

    def message(
        self, channel: Any, w: Work, parent: tuple[str | None, str | None]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The channel message for ``w`` and its task-sent event fields (None: no event).

        ``parent``: the root and own id of the task the message is sent from, if any.
        """
        tid, args = task_id(w), [w.id]
        root_id, parent_id = parent[0] or tid, parent[1]
        maxsize, maxlevels = self.repr_args
        argsrepr = saferepr(args, maxsize, maxlevels=maxlevels)
        headers = {
            **self.headers,
            "id": tid,
            "root_id": root_id,
            "parent_id": parent_id,
            "argsrepr": argsrepr,
        }
        properties = {**self.properties, "correlation_id": tid}
        ctype, encoding, body = dumps((args, self.kwargs, self.embed), serializer=self.serializer)
        message = channel.prepare_message(body, 0, ctype, encoding, headers, properties)
        if self.sent is None:
            return message, None
        ids = {"uuid": tid, "root_id": root_id, "parent_id": parent_id, "args": argsrepr}
        return message, {**self.sent, **ids}


class _RedisBatch:
    """One dispatch through kombu's Redis publish batch (one pipeline)."""

    def __init__(
        self, app: Celery, producer: Producer, templates: dict[str, _Template | None]
    ) -> None:
        self.app = app
        self.producer = producer
        self.channel = producer.channel
        self.evd = app.amqp._event_dispatcher
        # Producer.publish's delivery mode for an event: the dispatcher's, else the producer's.
        self.event_mode = maybe_delivery_mode(
            self.evd.delivery_mode or getattr(producer.exchange, "delivery_mode", None)
        )
        self.templates = templates
        # Inside a worker task the messages carry its ids, as send_task sets them.
        parent = app.current_worker_task
        self.parent: tuple[str | None, str | None] = (
            (parent.request.root_id or parent.request.id, parent.request.id)
            if parent
            else (None, None)
        )

    def publish(self, work: Sequence[Work]) -> list[Work]:
        """Publish all it can or raise; return the rows left to ``send_task``."""
        rest: list[Work] = []
        session = self.channel.create_publish_batch(max_size=BATCH_COMMANDS)
        try:
            for w in work:
                template = None if w.delay_s else self._template(TASK_FOR[w.kind])
                if template is None:
                    rest.append(w)
                    continue
                message, sent = template.message(self.channel, w, self.parent)
                session.publish(message, exchange="", routing_key=template.queue)
                if sent is not None:
                    session.publish(
                        self._event(sent), exchange=self.evd.exchange.name, routing_key="task.sent"
                    )
            # Raises kombu's BatchPublishError when Redis did not take the pipeline. Not
            # retried here: the rows stay queued and the outbox publishes them again.
            session.flush()
        except BaseException:
            session.discard()
            raise
        finally:
            session.close()
        return rest

    def _template(self, name: str) -> _Template | None:
        if name not in self.templates:
            self.templates[name] = self._new_template(name)
        template = self.templates[name]
        if template is not None and template.declared_on is not self.channel:
            # send_task declares per message (kombu caches it per connection); once per
            # channel is enough.
            self.producer.maybe_declare(template.queue_entity)
            if self.app.conf.task_send_sent_event:
                self.producer.maybe_declare(self.evd.exchange)
            template.declared_on = self.channel
        return template

    def _new_template(self, name: str) -> _Template | None:
        # Only the default route to a plain direct queue; any other route (exchange,
        # routing key, priority...) is send_task's to interpret.
        options = self.app.amqp.router.route({}, name)
        queue = options.get("queue")
        if set(options) != {"queue"} or not isinstance(queue, Queue):
            return None
        if queue.exchange is None or queue.exchange.type != "direct":
            return None
        return _Template(self.app, name, queue)

    def _event(self, fields: dict[str, Any]) -> dict[str, Any]:
        # The task-sent event (Flower), as the event dispatcher's ``publish`` builds it.
        evd = self.evd
        event = Event(
            "task-sent",
            hostname=evd.hostname,
            utcoffset=utcoffset(),
            pid=evd.pid,
            clock=evd.clock.forward(),
            **fields,
        )
        ctype, encoding, body = dumps(event, serializer=evd.serializer)
        return self.channel.prepare_message(
            body, 0, ctype, encoding, evd.headers, {"delivery_mode": self.event_mode}
        )
