"""Matching's tables: volunteers, the requests it is matching, and the offers it has made."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db import UtcDateTime
from shared.outbox import Outbox, OutboxMixin, ProcessedEventMixin, utcnow


class Base(DeclarativeBase):
    pass


class OutboxEvent(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProcessedEvent(ProcessedEventMixin, Base):
    __tablename__ = "processed_events"


outbox = Outbox(OutboxEvent)


class Volunteer(Base):
    """A trained volunteer: what they can do, where they live, and how far they will go."""

    __tablename__ = "volunteers"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    community: Mapped[str] = mapped_column(sa.String(64), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    phone: Mapped[str] = mapped_column(sa.String(20), unique=True)
    skills: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    latitude: Mapped[float] = mapped_column(sa.Float)
    longitude: Mapped[float] = mapped_column(sa.Float)
    max_distance_km: Mapped[float] = mapped_column(sa.Float)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class MatchRequest(Base):
    """What matching knows of a request: only what it needs to find someone."""

    __tablename__ = "match_requests"

    request_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    community: Mapped[str] = mapped_column(sa.String(64))
    support_type: Mapped[str] = mapped_column(sa.String(40))
    latitude: Mapped[float] = mapped_column(sa.Float)
    longitude: Mapped[float] = mapped_column(sa.Float)
    area: Mapped[str] = mapped_column(sa.String(8))
    urgency: Mapped[str] = mapped_column(sa.String(8), default="routine")
    window_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UtcDateTime)
    window_days: Mapped[list[str] | None] = mapped_column(sa.JSON)
    window_part: Mapped[str | None] = mapped_column(sa.String(10))
    status: Mapped[str] = mapped_column(sa.String(16), default="open")  # open, matched, unmatched, cancelled
    correlation_id: Mapped[str] = mapped_column(sa.String(64))
    offers: Mapped[list["Offer"]] = relationship(back_populates="request", order_by="Offer.created_at")


class CancelledEarly(Base):
    """A cancellation that arrived before its request did (several workers, or a retry, can reorder events)."""

    __tablename__ = "cancelled_early"

    request_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Offer(Base):
    """A request offered to one volunteer, answered by replying to an SMS with its code."""

    __tablename__ = "offers"
    __table_args__ = (
        # A code names one open offer at a time; a request has at most one accepted offer.
        sa.Index("uq_offers_open_code", "code", unique=True,
                 sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'")),
        sa.Index("uq_offers_one_accepted", "request_id", unique=True,
                 sqlite_where=sa.text("status = 'accepted'"), postgresql_where=sa.text("status = 'accepted'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    request_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("match_requests.request_id"), index=True)
    volunteer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("volunteers.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(4))
    status: Mapped[str] = mapped_column(sa.String(16), default="open")  # open, accepted, declined, withdrawn
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    request: Mapped[MatchRequest] = relationship(back_populates="offers")
    volunteer: Mapped[Volunteer] = relationship()
