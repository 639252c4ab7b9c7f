"""Notify's tables: every SMS sent and received, and its outbox and inbox."""

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


class OutgoingMessage(Base):
    """An SMS we mean to send. Its key makes it unique: the same offer is never texted twice.

    status: queued -> sending -> sent, or failed. A message that a crash left in `sending` is never sent
    again (the provider may already have it).
    """

    __tablename__ = "outgoing_messages"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    key: Mapped[str] = mapped_column(sa.String(80), unique=True)
    purpose: Mapped[str] = mapped_column(sa.String(20))
    to_phone: Mapped[str] = mapped_column(sa.String(20), index=True)
    body: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(12), default="queued", index=True)
    provider_sid: Mapped[str | None] = mapped_column(sa.String(64))
    error: Mapped[str | None] = mapped_column(sa.Text)
    correlation_id: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class InboundMessage(Base):
    """An SMS a volunteer sent us, kept once per provider MessageSid."""

    __tablename__ = "inbound_messages"

    message_sid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    from_phone: Mapped[str] = mapped_column(sa.String(20), index=True)
    to_phone: Mapped[str] = mapped_column(sa.String(20))
    body: Mapped[str] = mapped_column(sa.Text)
    keyword: Mapped[str | None] = mapped_column(sa.String(12))
    code: Mapped[str | None] = mapped_column(sa.String(4))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
