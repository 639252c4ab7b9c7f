"""Intake's tables: the support requests it has received, and its outbox and inbox."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UtcDateTime
from shared.outbox import Outbox, OutboxMixin, ProcessedEventMixin, utcnow


class Base(DeclarativeBase):
    pass


class OutboxEvent(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProcessedEvent(ProcessedEventMixin, Base):
    __tablename__ = "processed_events"


outbox = Outbox(OutboxEvent)

# A request only moves forward through these; a late or repeated event never moves it back.
STATUSES = ("submitted", "offered", "unmatched", "matched")


class SupportRequest(Base):
    """A request for practical or bereavement support, as intake received it."""

    __tablename__ = "requests"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    community: Mapped[str] = mapped_column(sa.String(64), index=True)
    requester_name: Mapped[str] = mapped_column(sa.String(200))
    requester_phone: Mapped[str] = mapped_column(sa.String(20))
    postcode: Mapped[str | None] = mapped_column(sa.String(10))
    area: Mapped[str] = mapped_column(sa.String(8), default="")
    latitude: Mapped[float] = mapped_column(sa.Float)
    longitude: Mapped[float] = mapped_column(sa.Float)
    support_type: Mapped[str] = mapped_column(sa.String(40))
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime] = mapped_column(UtcDateTime)
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(16), default="submitted", index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    def advance(self, status: str) -> None:
        """Move to `status` if that is further along than where the request is now."""
        if STATUSES.index(status) > STATUSES.index(self.status):
            self.status = status
