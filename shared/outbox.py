"""Transactional outbox and idempotent inbox, shared by every service.

A service writes its events into its own `outbox` table in the same transaction as the change they
describe (`add`); the relay publishes them and marks them published. A consumer records each event it has
handled in `processed_events` in the same transaction as its effects (`handle_once`), so a redelivered
event does nothing.

The relay does not poll: a transaction that added events rings the outbox's `Doorbell` when it commits, which
wakes the relay at once in the same process, and in other processes through the database (PostgreSQL's
LISTEN/NOTIFY) or, on SQLite, through FIFOs beside the database file (`bus.Wakes`). It still sweeps every
`SWEEP_SECONDS`, so an event whose wake-up was lost (a listener's connection cut) waits no longer than that.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from shared import bus, tracing
from shared.clock import utcnow
from shared.contracts import Event, EventPayload, make_event
from shared.db import UtcDateTime, is_postgres
from shared.telemetry import EVENTS_PUBLISHED, describe

log = logging.getLogger(__name__)


SWEEP_SECONDS = bus.SWEEP_SECONDS
RINGS = "ccs.doorbells"  # session.info key: the doorbells a transaction rings if it commits, and how often
CHECK_SECONDS = 30.0  # how often a listener asks PostgreSQL whether its connection still answers


class Doorbell:
    """Wakes a loop when a committed transaction has work for it, instead of the loop polling for work.

    `ring_after_commit(session)` rings it when (and only if) that session's transaction commits: in this process
    at once; with a `channel`, in the database's other processes too (a NOTIFY in the same transaction on
    PostgreSQL, which the server delivers at commit; a poke of the FIFOs beside a SQLite file after commit), where
    `listen` hears it. `wait` returns when rung, or after its timeout (the caller's sweep).

    Several threads may wait on one doorbell (notify's senders): each ring wakes one of them, and a transaction
    rings once for each piece of work it added, so no more wake than there is work for."""

    def __init__(self, channel: str | None = None):
        self.channel = channel
        self._changed = threading.Condition()
        self._rings = 0  # rings kept for the loops waiting, or for the next wait when none does
        self._waiting = 0

    def ring(self, times: int = 1) -> None:
        """Wake `times` of the loops waiting in this process (or keep one ring for the next wait, when all are
        busy: the busy ones look for work again before they wait)."""
        with self._changed:
            self._rings = min(self._rings + times, max(self._waiting, 1))
            self._changed.notify(times)

    def ring_after_commit(self, session: Session) -> None:
        """Ring when this session's transaction commits (nothing if it rolls back), once more for each call."""
        rings = session.info.setdefault(RINGS, {})
        rings[self] = rings.get(self, 0) + 1

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait until rung, `stop` is set, or `timeout` seconds pass; True if rung. A ring while the caller was busy
        is kept for this wait; one that came after the caller started looking for work was seen by that look."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._waiting += 1
            try:
                while not self._rings:
                    left = deadline - time.monotonic()
                    if left <= 0 or (stop is not None and stop.is_set()):
                        return False
                    self._changed.wait(min(left, 1.0))  # in slices, so a set `stop` is seen within a second
                self._rings -= 1
                return True
            finally:
                self._waiting -= 1

    def listen(self, engine: Engine, stop: threading.Event, interval: float = 0.1) -> None:
        """Until `stop` is set, ring this doorbell whenever another process rings its channel on this database.
        A lost connection is made again with back-off, and the doorbell rung once it is (for what was committed
        meanwhile). While nothing can be heard (no connection, no FIFO) it rings every `interval` (the poll
        interval), so the loop looks as often as it used to poll."""
        delay = 0.5
        while not stop.is_set():
            started = time.monotonic()
            try:
                if engine.dialect.name == "postgresql":
                    self._listen_postgres(engine, stop)
                else:
                    self._listen_fifos(engine, stop, interval)
                return
            except (psycopg.Error, OSError) as exc:
                if time.monotonic() - started > CHECK_SECONDS:  # it had been listening: a new fault, not the same
                    delay = 0.5
                log.warning("%s listener lost its connection; again in %.1fs: %s", self.channel, delay, describe(exc))
                deadline = time.monotonic() + delay
                while not stop.wait(min(interval, max(deadline - time.monotonic(), 0))):
                    self.ring()
                    if time.monotonic() >= deadline:
                        break
                delay = min(delay * 2, 10.0)

    def _listen_postgres(self, engine: Engine, stop: threading.Event) -> None:
        """LISTEN, asking every CHECK_SECONDS whether the connection still answers (and TCP keepalives besides):
        a connection dropped without a word would otherwise wait for notifications forever."""
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=30,
                             keepalives_interval=10, keepalives_count=3) as connection:
            connection.execute(f"LISTEN {self.channel}")
            self.ring()
            checked = time.monotonic()
            while not stop.is_set():
                for _ in connection.notifies(timeout=1.0, stop_after=1):
                    self.ring()
                if time.monotonic() - checked >= CHECK_SECONDS:
                    connection.execute("SELECT 1")
                    checked = time.monotonic()
                    self.ring()  # for a notification that came during the query

    def _listen_fifos(self, engine: Engine, stop: threading.Event, interval: float) -> None:
        wakes = _fifos(engine, self.channel)
        if wakes is None:  # an in-memory database: no other process shares it
            stop.wait()
            return
        try:
            self.ring()  # for what was committed before the FIFO was there to be poked
            while not stop.is_set():
                deaf = not wakes.ready()
                if wakes.wait(interval if deaf else 1.0) or deaf:
                    self.ring()
        finally:
            wakes.close()


def _fifos(bind, channel: str) -> bus.Wakes | None:
    """The FIFOs a SQLite database's processes are woken through for `channel`: beside the database file."""
    database = bind.url.database
    if not database or database == ":memory:":
        return None
    return bus.Wakes(Path(f"{database}.wake") / channel)


@sa.event.listens_for(Session, "before_commit")
def _notify_other_processes(session: Session) -> None:
    """On PostgreSQL, the transaction about to commit tells the listeners of each channel it rings (delivered at
    commit, never for a rollback; several in one transaction arrive as one)."""
    channels = {bell.channel for bell in session.info.get(RINGS, {}) if bell.channel}
    if channels and is_postgres(session):
        for channel in sorted(channels):
            session.execute(sa.text(f"NOTIFY {channel}"))


@sa.event.listens_for(Session, "after_commit")
def _ring_doorbells(session: Session) -> None:
    """The transaction committed: ring its doorbells here, and on SQLite in the database's other processes. Nothing
    here may fail the request whose work is already stored: a wake-up that cannot be given is logged, and the
    sweep finds that work."""
    for bell, times in session.info.pop(RINGS, {}).items():
        try:
            bell.ring(times)
            if bell.channel and not is_postgres(session):
                wakes = _fifos(session.get_bind(), bell.channel)
                if wakes is not None:
                    wakes.poke()
        except Exception as exc:
            log.warning("could not wake the loops of %s after a commit: %s", bell.channel or "this process",
                        type(exc).__name__)


@sa.event.listens_for(Session, "after_rollback")
def _silence_doorbells(session: Session) -> None:
    """Nothing was committed: nobody is woken."""
    session.info.pop(RINGS, None)


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

    def __init__(self, table: type[OutboxMixin], processed: type[ProcessedEventMixin],
                 doorbell: Doorbell | None = None):
        self.table = table
        self.processed = processed
        self.doorbell = doorbell or Doorbell("ccs_outbox")

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
        self.doorbell.ring_after_commit(session)
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
                  interval: float, sweep: float = SWEEP_SECONDS, limit: int = 100) -> None:
        """Relay until `stop` is set: whenever the doorbell rings (an event committed), else every `sweep` seconds;
        backing off from `interval` while the broker or database is unreachable."""
        delay = interval
        while not stop.is_set():
            try:
                published = self.relay_once(sessions, publisher, limit)
                delay = interval
            except Exception as exc:  # broker or database down: keep the events, try again later
                log.warning("outbox relay failed; retrying in %.1fs: %s", delay, describe(exc))
                publisher.reset()
                stop.wait(delay)
                delay = min(delay * 2 if delay >= 0.5 else 0.5, 10.0)
                continue
            if published < limit:
                self.doorbell.wait(sweep, stop)


def handle_once(unit_of_work: Callable[[], Any], consumer: str, event: Event,
                handler: Callable[[Any, Event], None]) -> bool:
    """Run `handler(uow, event)` and record the event in one unit of work; False if it had been handled before."""
    with unit_of_work() as uow:
        if not uow.first_time(consumer, event.event_id):
            return False
        handler(uow, event)
        uow.commit()
    return True
