"""Transactional outbox and idempotent inbox, shared by every service.

A service writes its events into its own `outbox` table in the same transaction as the change they
describe (`add`); the relay publishes them and marks them published. A consumer records each event it has
handled in `processed_events` in the same transaction as its effects (`handle_once`), so a redelivered
event does nothing.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from shared import bus, tracing
from shared.clock import utcnow
from shared.contracts import Event, EventPayload, make_event
from shared.db import UtcDateTime, is_postgres
from shared.telemetry import EVENTS_PUBLISHED, describe

log = logging.getLogger(__name__)


class OutboxMixin:
    """Columns of a service's `outbox` table."""

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, unique=True)
    event_type: Mapped[str] = mapped_column(sa.String(64))
    body: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class ProcessedEventMixin:
    """Columns of a service's `processed_events` table: one row per event it has handled."""

    consumer: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Outbox:
    """Writes events into a service's outbox table, relays them to the bus, and knows its inbox table."""

    def __init__(self, table: type[OutboxMixin], processed: type[ProcessedEventMixin]):
        self.table = table
        self.processed = processed

    @classmethod
    def for_base(cls, base) -> "Outbox":
        """A service's `outbox` and `processed_events` tables, declared on its declarative base."""
        table = type("OutboxEvent", (OutboxMixin, base), {"__tablename__": "outbox"})
        processed = type("ProcessedEvent", (ProcessedEventMixin, base), {"__tablename__": "processed_events"})
        return cls(table, processed)

    def add(self, session: Session, event: EventPayload | str, payload: dict[str, Any] | None = None, *,
            correlation_id: str | None = None) -> dict[str, Any]:
        """Check an event against its contract and stage it in the caller's transaction, with the trace context of
        the span it happens in (shared/tracing.py)."""
        envelope = make_event(event, payload, correlation_id=correlation_id, trace_context=tracing.current_context())
        event_type = envelope["type"]
        session.add(self.table(event_id=uuid.UUID(envelope["event_id"]), event_type=event_type, body=envelope))
        return envelope

    def backlog(self, session: Session) -> int:
        """How many events are waiting to be published."""
        return session.scalar(sa.select(sa.func.count()).where(self.table.published_at.is_(None))) or 0

    def oldest_waiting_seconds(self, session: Session) -> float:
        """How long the oldest event waiting to be published has waited, in seconds; 0 when none waits. One query
        that the index on published_at answers from the waiting rows alone, however many have been published
        (a relay that keeps failing shows here as an age that grows, where the backlog's size may stay small)."""
        oldest = session.scalar(sa.select(sa.func.min(self.table.created_at)).where(self.table.published_at.is_(None)))
        return max((utcnow() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0

    def relay_once(self, sessions: sessionmaker, publisher: bus.Publisher, limit: int = 100) -> int:
        """Publish a batch of waiting events in order; mark each one published once the broker confirms it."""
        with sessions.begin() as session:
            query = sa.select(self.table).where(self.table.published_at.is_(None)).order_by(self.table.id).limit(limit)
            if is_postgres(session):
                query = query.with_for_update(skip_locked=True)
            rows = session.scalars(query).all()
            failed = None
            for row in rows:
                try:
                    with tracing.span_from(row.body, f"{row.event_type} publish", tracing.SpanKind.PRODUCER, {
                            "messaging.system": "rabbitmq", "messaging.operation.type": "publish",
                            "messaging.destination.name": row.event_type,
                            "messaging.message.id": str(row.event_id)}):
                        # Its consumers continue from this span (the one that made the event is its parent).
                        publisher.publish({**row.body, **tracing.current_context()})
                except Exception as exc:  # this one and those after it wait for the next try
                    failed = exc
                    break
                row.published_at = utcnow()
                EVENTS_PUBLISHED.labels(row.body.get("producer", "")).inc()
            # Leaving the block commits what the broker confirmed, even when a later publish failed: those are not
            # published again.
        if failed is not None:
            raise failed
        return len(rows)

    def run_relay(self, sessions: sessionmaker, publisher: bus.Publisher, stop: threading.Event,
                  interval: float) -> None:
        """Relay until `stop` is set, backing off while the broker or database is unreachable."""
        delay = interval
        while not stop.is_set():
            try:
                published = self.relay_once(sessions, publisher)
                delay = interval
            except Exception as exc:  # broker or database down: keep the events, try again later
                log.warning("outbox relay failed; retrying in %.1fs: %s", delay, describe(exc))
                publisher.reset()
                stop.wait(delay)
                delay = min(delay * 2 if delay >= 0.5 else 0.5, 10.0)
                continue
            if not published:
                stop.wait(interval)


def handle_once(unit_of_work: Callable[[], Any], consumer: str, event: Event,
                handler: Callable[[Any, Event], None]) -> bool:
    """Run `handler(uow, event)` and record the event in one unit of work; False if it had been handled before."""
    with unit_of_work() as uow:
        if not uow.first_time(consumer, event.event_id):
            return False
        handler(uow, event)
        uow.commit()
    return True
