"""The message bus: connections, publishing with confirms, and the consuming worker.

A handler error puts the message back through the `retry` exchange with an attempt count; after
`max_attempts` it goes to the queue's dead-letter queue with the reason. A message that cannot be decoded
or does not match its contract is dead-lettered at once. Nothing is acknowledged before it is handled,
retried or dead-lettered.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any, Callable

from kombu import Connection, Consumer, Message, Producer, Queue
from kombu.mixins import ConsumerMixin
from kombu.transport import filesystem, virtual
from kombu.utils.json import dumps
from marshmallow import ValidationError

from shared import topology
from shared.config import Settings
from shared.contracts import Event, load_event
from shared.telemetry import DEAD_LETTERED

log = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


class FolderChannel(filesystem.Channel):
    """The filesystem channel, writing each file whole before anyone can open it.

    kombu creates a missing binding table by opening it empty and then locking it, so a second process starting
    at the same moment could lock the empty file first, fail to read it as JSON, and crash on declaring. It writes
    a message the same way, so a consumer could move the empty file away and read nothing: the consumer crashed
    and the message, written after the move into a file about to be deleted, was lost."""

    def _put(self, queue, payload, **kwargs):
        """Write the message under a hidden name, then rename it into the queue: it appears whole or not at all."""
        name = f"{int(round(time.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        draft = os.path.join(self.data_folder_out, f".{name}.part")  # not a name any queue reads
        with open(draft, "wb") as handle:
            handle.write(dumps(payload).encode())
        os.rename(draft, os.path.join(self.data_folder_out, name))

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        table = self._exchange_file(exchange)
        if not table.exists():
            self.control_folder.mkdir(parents=True, exist_ok=True)
            draft = table.with_name(f".{table.name}.{uuid.uuid4().hex}")
            draft.write_bytes(b"[]")
            try:
                os.link(draft, table)  # appears complete, or not at all; the first process wins
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        super()._queue_bind(exchange, routing_key, pattern, queue)


class FolderTransport(filesystem.Transport):
    """kombu's filesystem transport, remembering declared bindings per folder rather than per process.

    kombu keeps one record of declared bindings for the whole process and skips a binding it has seen,
    so a process that used one folder would never write the bindings into another (as tests do).
    """

    Channel = FolderChannel
    _states: dict[str, virtual.BrokerState] = {}

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        folder = client.transport_options["control_folder"]
        self.state = self._states.setdefault(folder, virtual.BrokerState())


def connect(settings: Settings) -> Connection:
    """A connection to the configured broker: the filesystem transport under var/, or RabbitMQ with confirms."""
    if settings.broker_is_filesystem:
        folder = settings.var_dir / "broker"
        for sub in ("messages", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return Connection(transport=FolderTransport, transport_options={
            "data_folder_in": str(folder / "messages"),
            "data_folder_out": str(folder / "messages"),
            "control_folder": str(folder / "control"),
            "polling_interval": settings.poll_interval,
        })
    return Connection(settings.broker_url, heartbeat=30, connect_timeout=5,
                      transport_options={"confirm_publish": True})


class Publisher:
    """Publishes envelopes on their producer's exchange, persistent and (on RabbitMQ) confirmed."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._connection: Connection | None = None
        self._producer: Producer | None = None

    def _ensure(self) -> Producer:
        if self._producer is None:
            self._connection = connect(self.settings)
            self._connection.ensure_connection(max_retries=1)
            topology.declare_all(self._connection)
            self._producer = Producer(self._connection.default_channel)
        return self._producer

    def publish(self, envelope: dict[str, Any], *, exchange=None, routing_key: str | None = None,
                headers: dict[str, Any] | None = None) -> None:
        """Publish one envelope; returns once the broker has it (confirmed on RabbitMQ)."""
        producer = self._ensure()
        exchange = exchange or topology.EXCHANGES[envelope["producer"]]
        producer.publish(
            envelope,
            exchange=exchange,
            routing_key=routing_key or envelope["type"],
            serializer="json",
            delivery_mode=2,
            headers=headers or {},
            message_id=envelope.get("event_id"),
            retry=True,
            retry_policy=RETRY_POLICY,
        )

    def publish_raw(self, body: bytes, *, exchange, routing_key: str, headers: dict[str, Any],
                    content_type: str | None, content_encoding: str | None) -> None:
        """Publish bytes as they came (for dead-lettering what could not be decoded)."""
        producer = self._ensure()
        producer.publish(body, exchange=exchange, routing_key=routing_key, headers=headers, delivery_mode=2,
                         content_type=content_type or "application/octet-stream",
                         content_encoding=content_encoding or "binary", retry=True, retry_policy=RETRY_POLICY)

    def reset(self) -> None:
        """Drop the connection so the next publish reconnects."""
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # already broken
                pass
        self._connection = None
        self._producer = None


Handler = Callable[[Event], None]


class Worker(ConsumerMixin):
    """Consumes a service's queues and hands each event to its handler, with retry and dead-lettering."""

    def __init__(self, connection: Connection, settings: Settings, queues: list[Queue],
                 dispatch: Callable[[Event], None], max_attempts: int | None = None):
        self.connection = connection
        self.settings = settings
        self.queues = queues
        self.dispatch = dispatch
        self.max_attempts = max_attempts or settings.max_attempts
        self.publisher = Publisher(settings)

    def get_consumers(self, consumer_cls, channel):
        """One consumer per queue, so a message's queue is known when it must be retried."""
        return [
            consumer_cls(queues=[queue], callbacks=[self._callback(queue)], accept=["json"], prefetch_count=10,
                         on_decode_error=self._decode_error(queue))
            for queue in self.queues
        ]

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        """Declare the whole topology once connected."""
        topology.declare_all(connection)
        log.info("%s worker consuming %s", self.settings.service, ", ".join(q.name for q in self.queues))

    def on_consume_end(self, connection, channel):
        """Release the publishing connection as well."""
        self.publisher.reset()

    def _callback(self, queue: Queue):
        def on_message(body: Any, message: Message) -> None:
            self.handle(queue, body, message)
        return on_message

    def _decode_error(self, queue: Queue):
        def on_decode_error(message: Message, exc: Exception) -> None:
            self.dead_letter(queue, message, f"cannot decode message: {exc}")
        return on_decode_error

    def handle(self, queue: Queue, body: Any, message: Message) -> None:
        """Validate, dispatch, and settle one message."""
        try:
            event = load_event(body)
        except ValidationError as err:
            self.dead_letter(queue, message, f"does not match its contract: {err.messages}")
            return
        try:
            self.dispatch(event)
        except Exception as exc:
            attempts = int((message.headers or {}).get("x-attempts", 0)) + 1
            if attempts >= self.max_attempts:
                log.exception("%s failed on %s %s after %d attempts; dead-lettered",
                              queue.name, event.type, event.event_id, attempts)
                self.dead_letter(queue, message, f"handler failed {attempts} times: {type(exc).__name__}: {exc}")
                return
            log.warning("%s failed on %s %s (attempt %d); retrying: %s",
                        queue.name, event.type, event.event_id, attempts, type(exc).__name__)
            time.sleep(min(0.1 * 2 ** attempts, 2.0))
            self.publisher.publish(body, exchange=topology.RETRY, routing_key=queue.name,
                                   headers={**(message.headers or {}), "x-attempts": attempts})
        message.ack()

    def dead_letter(self, queue: Queue, message: Message, reason: str) -> None:
        """Move a message to the queue's dead-letter queue with the reason, then acknowledge it."""
        log.error("dead-lettering a message from %s: %s", queue.name, reason)
        DEAD_LETTERED.labels(queue.name).inc()
        self.publisher.publish_raw(
            message.body if isinstance(message.body, bytes) else str(message.body).encode(),
            exchange=topology.DEAD_LETTER, routing_key=queue.name,
            headers={**(message.headers or {}), "x-dead-letter-reason": reason[:1000], "x-original-queue": queue.name},
            content_type=message.content_type, content_encoding=message.content_encoding,
        )
        message.ack()


__all__ = ["Consumer", "Connection", "Publisher", "Worker", "connect"]
