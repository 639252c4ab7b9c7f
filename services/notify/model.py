"""Notify's tables: every SMS sent and received, and its outbox and inbox."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UtcDateTime
from shared.clock import utcnow
from shared.outbox import Outbox, OutboxMixin, ProcessedEventMixin


class Base(DeclarativeBase):
    pass


class OutboxEvent(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProcessedEvent(ProcessedEventMixin, Base):
    __tablename__ = "processed_events"


outbox = Outbox(OutboxEvent)


class Contact(Base):
    """A phone number we text or hear from: its language, and whether it may be texted at all.

    opted_out_at is set by STOP (or Twilio's error 21610) and cleared by START; invalid_at when Twilio says the
    number cannot take SMS (21211, 21614). Nothing but an opt-in confirmation goes to such a number.
    """

    __tablename__ = "contacts"

    phone: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    language: Mapped[str | None] = mapped_column(sa.String(8))
    opted_out_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    opted_in_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    invalid_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    invalid_reason: Mapped[str | None] = mapped_column(sa.String(200))

    @classmethod
    def of(cls, session, phone: str) -> "Contact":
        """The number's row, added to the session when we have none yet."""
        contact = session.get(cls, phone)
        if contact is None:
            contact = cls(phone=phone)
            session.add(contact)
        return contact


class OutgoingMessage(Base):
    """An SMS we mean to send. Its key makes it unique: the same offer is never texted twice.

    status: queued -> sending -> sent -> delivered or undelivered; or failed; or cancelled (a reminder no longer
    needed). A message that a crash left in `sending` is never sent again (the provider may already have it):
    after a while it counts as sent, without a provider SID.
    next_attempt_at: not before then (quiet hours, a reminder's time, or a retry's back-off); None means now.
    While `sending`, when a message still not recorded as sent counts as left by a crash.
    """

    __tablename__ = "outgoing_messages"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    key: Mapped[str] = mapped_column(sa.String(80), unique=True)
    purpose: Mapped[str] = mapped_column(sa.String(20))
    to_phone: Mapped[str] = mapped_column(sa.String(20), index=True)
    body: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(12), default="queued", index=True)
    provider_sid: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    error: Mapped[str | None] = mapped_column(sa.Text)
    correlation_id: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    from_phone: Mapped[str | None] = mapped_column(sa.String(20))  # the community's sender number


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
