"""The unit of work: one transaction over a service's own database, with its outbox and its inbox.

A use case takes a unit of work, reads and changes through its repositories, publishes events with
`uow.publish(...)` (they go into the outbox in the same transaction) and calls `uow.commit()`; leaving the block
without committing rolls everything back, events included. Each service subclasses `SqlUnitOfWork` to attach
its repositories in `open()`; unit tests use a fake with the same shape (tests/unit/fakes.py).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shared.contracts import EventPayload
from shared.outbox import Outbox

log = logging.getLogger(__name__)


class SqlUnitOfWork:
    """A unit of work over SQLAlchemy: `with uow: ...; uow.commit()`."""

    session: Session

    def __init__(self, sessions: sessionmaker, outbox: Outbox):
        self.sessions = sessions
        self.outbox = outbox

    def __enter__(self):
        self.session = self.sessions()
        self.session.begin()
        self.open(self.session)
        return self

    def __exit__(self, *exc) -> None:
        """Roll back whatever was not committed; what was read stays readable (detached), so a view can render
        it after the block (a rollback alone would expire it)."""
        self.session.close()

    def open(self, session: Session) -> None:
        """Attach the service's repositories to this transaction's session."""

    def publish(self, event: EventPayload, *, correlation_id: str | None = None) -> dict[str, Any]:
        """Stage an event in the outbox, to go out if and only if this unit of work commits."""
        return self.outbox.add(self.session, event, correlation_id=correlation_id)

    def first_time(self, consumer: str, event_id: uuid.UUID) -> bool:
        """Record that `consumer` handles `event_id` in this transaction; False if it was handled before."""
        try:  # one INSERT, without the ORM's flush
            self.session.execute(sa.insert(self.outbox.processed.__table__).values(consumer=consumer,
                                                                                   event_id=event_id))
        except IntegrityError:
            self.session.rollback()
            log.info("event %s already handled by %s; skipped", event_id, consumer)
            return False
        return True

    def flush(self) -> None:
        """Send what is pending to the database (to see generated keys, or let a unique index refuse it)."""
        self.session.flush()

    def commit(self) -> None:
        """Make everything done in this unit of work, and its events, permanent."""
        self.session.commit()

    def rollback(self) -> None:
        """Undo everything done in this unit of work."""
        self.session.rollback()
