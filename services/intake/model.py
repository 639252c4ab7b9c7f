"""Intake's tables: requests for support, the consents and timeline that go with them, users, the audit log,
idempotency keys, and intake's outbox and inbox."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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

# Where a request is. A late or repeated event never moves it back; cancelled and completed are final.
STATUSES = ("submitted", "offered", "unmatched", "matched", "completed", "cancelled")
OPEN_STATUSES = ("submitted", "offered", "unmatched", "matched")
URGENCIES = ("routine", "soon", "urgent")
SOURCES = ("coordinator", "pcn", "social_prescriber", "partner", "health_system")
CONSENTS = ("share_contact", "sms_contact")


class SupportRequest(Base):
    """A request for practical or bereavement support, for one person."""

    __tablename__ = "requests"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    community: Mapped[str] = mapped_column(sa.String(64), index=True)
    source: Mapped[str] = mapped_column(sa.String(20), default="coordinator")
    status: Mapped[str] = mapped_column(sa.String(16), default="submitted", index=True)
    outcome: Mapped[str] = mapped_column(sa.Text, default="")

    # The person
    person_name: Mapped[str] = mapped_column(sa.String(200))
    person_phone: Mapped[str | None] = mapped_column(sa.String(20))
    address: Mapped[str] = mapped_column(sa.Text, default="")
    postcode: Mapped[str | None] = mapped_column(sa.String(10))
    area: Mapped[str] = mapped_column(sa.String(8), default="")
    latitude: Mapped[float] = mapped_column(sa.Float)
    longitude: Mapped[float] = mapped_column(sa.Float)
    preferred_language: Mapped[str] = mapped_column(sa.String(8), default="en")
    date_of_birth: Mapped[date | None] = mapped_column(sa.Date)
    is_carer: Mapped[bool] = mapped_column(sa.Boolean, default=False)

    # The help
    support_type: Mapped[str] = mapped_column(sa.String(40), index=True)
    urgency: Mapped[str] = mapped_column(sa.String(8), default="routine", index=True)
    window_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UtcDateTime)
    window_days: Mapped[list[str] | None] = mapped_column(sa.JSON)
    window_part: Mapped[str | None] = mapped_column(sa.String(10))
    repeat_every_weeks: Mapped[int | None] = mapped_column(sa.Integer)
    repeat_occurrences: Mapped[int] = mapped_column(sa.Integer, default=1)
    preferences: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    coordinator_notes: Mapped[str] = mapped_column(sa.Text, default="")

    # Referrals
    referrer_organisation: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    referrer_name: Mapped[str | None] = mapped_column(sa.String(200))
    referrer_contact: Mapped[str | None] = mapped_column(sa.String(200))
    referral_reason: Mapped[str] = mapped_column(sa.Text, default="")
    external_id: Mapped[str | None] = mapped_column(sa.String(64))
    source_document: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # a FHIR ServiceRequest, as sent

    created_by: Mapped[str] = mapped_column(sa.String(200), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    consents: Mapped[list["Consent"]] = relationship(
        back_populates="request", order_by="Consent.recorded_at", lazy="selectin", cascade="all, delete-orphan")
    timeline: Mapped[list["TimelineEntry"]] = relationship(
        back_populates="request", order_by="TimelineEntry.id", lazy="selectin", cascade="all, delete-orphan")

    def advance(self, status: str) -> bool:
        """Move to `status` if that is further along than where the request is now; True if it moved."""
        if self.status in ("completed", "cancelled"):
            return False
        if status in ("completed", "cancelled") or STATUSES.index(status) > STATUSES.index(self.status):
            self.status = status
            return True
        return False

    def consent(self, kind: str) -> bool:
        """The latest recorded answer for a kind of consent (no record means no)."""
        answers = [c.given for c in self.consents if c.kind == kind]
        return answers[-1] if answers else False

    def note(self, what: str, detail: str = "", actor: str = "", at: datetime | None = None) -> None:
        """Add an entry to the request's timeline."""
        self.timeline.append(TimelineEntry(what=what, detail=detail, actor=actor, at=at or utcnow()))


class Consent(Base):
    """A consent the person gave or refused, with who recorded it and when. Never edited: a change is a new row."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    given: Mapped[bool] = mapped_column(sa.Boolean)
    recorded_by: Mapped[str] = mapped_column(sa.String(200))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    request: Mapped[SupportRequest] = relationship(back_populates="consents")


class TimelineEntry(Base):
    """Something that happened to a request: submitted, offered, accepted, matched, completed, cancelled ..."""

    __tablename__ = "timeline"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("requests.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    what: Mapped[str] = mapped_column(sa.String(20))
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    actor: Mapped[str] = mapped_column(sa.String(200), default="")
    request: Mapped[SupportRequest] = relationship(back_populates="timeline")


class AuditEntry(Base):
    """Who created, viewed or changed a person's details, and when. Append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(20))
    action: Mapped[str] = mapped_column(sa.String(20))
    request_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)
    fields: Mapped[list[str]] = mapped_column(sa.JSON, default=list)


class IdempotencyKey(Base):
    """The first answer to a create made with an Idempotency-Key, to give again for the same key and body."""

    __tablename__ = "idempotency_keys"

    subject: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    endpoint: Mapped[str] = mapped_column(sa.String(100))
    body_hash: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int] = mapped_column(sa.Integer)
    response: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class User(Base):
    """Someone who signs in: an admin, coordinator, referrer or manager, in one or more communities."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(sa.String(200), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(20))
    communities: Mapped[list[str]] = mapped_column(sa.JSON)
    organisation: Mapped[str | None] = mapped_column(sa.String(200))
    password_hash: Mapped[str] = mapped_column(sa.String(300))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
