"""Matching's tables: volunteers, the requests it is matching, and the offers it has made."""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime

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


VOLUNTEER_STATUSES = ("active", "paused", "left")

# The grid the candidate search uses: cells CELL_DEGREES of latitude by CELL_DEGREES of longitude (about 4.4 km
# north to south; 2.7 km east to west in Lancashire, 3.2 km in Ontario), numbered row by row in one integer.
CELL_DEGREES = 0.04
CELL_COLUMNS = 10_000  # more than the 9,000 columns round the world, so a row's cells are one range of keys


def grid_row(latitude: float) -> int:
    """The grid row a latitude falls in."""
    return math.floor(latitude / CELL_DEGREES)


def grid_column(longitude: float) -> int:
    """The grid column a longitude falls in (0 to 8,999, from 180° west)."""
    return min(math.floor((longitude + 180.0) / CELL_DEGREES), round(360 / CELL_DEGREES) - 1)


def grid_cell(latitude: float, longitude: float) -> int:
    """The one integer naming the grid cell of a place: row by row, so a run of cells in a row is a key range."""
    return grid_row(latitude) * CELL_COLUMNS + grid_column(longitude)


class Volunteer(Base):
    """A trained volunteer: what they can do, where they live, how far they will go, and when they are free."""

    __tablename__ = "volunteers"
    __table_args__ = (sa.Index("ix_volunteers_cell", "community", "status", "cell"),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    community: Mapped[str] = mapped_column(sa.String(64), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    phone: Mapped[str] = mapped_column(sa.String(20), unique=True)
    postcode: Mapped[str | None] = mapped_column(sa.String(10))
    area: Mapped[str] = mapped_column(sa.String(8), default="")
    latitude: Mapped[float] = mapped_column(sa.Float)
    longitude: Mapped[float] = mapped_column(sa.Float)
    cell: Mapped[int] = mapped_column(sa.Integer)  # grid_cell(latitude, longitude), kept by _place_in_grid
    max_distance_km: Mapped[float] = mapped_column(sa.Float)
    skills: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    languages: Mapped[list[str]] = mapped_column(sa.JSON, default=lambda: ["en"])
    gender: Mapped[str | None] = mapped_column(sa.String(16))
    # Weekly windows as "mon:morning" etc.; empty means any time.
    availability: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    weekly_cap: Mapped[int] = mapped_column(sa.Integer, default=3)
    status: Mapped[str] = mapped_column(sa.String(8), default="active")  # VOLUNTEER_STATUSES
    sms_opted_out_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    checks: Mapped[list["VolunteerCheck"]] = relationship(back_populates="volunteer", lazy="selectin",
                                                          cascade="all, delete-orphan")
    time_away: Mapped[list["TimeAway"]] = relationship(back_populates="volunteer", lazy="selectin",
                                                       cascade="all, delete-orphan", order_by="TimeAway.starts_on")


@sa.event.listens_for(Volunteer, "before_insert")
@sa.event.listens_for(Volunteer, "before_update")
def _place_in_grid(_mapper, _connection, volunteer: Volunteer) -> None:
    """Keep a volunteer's grid cell with their place, however the place was set."""
    volunteer.cell = grid_cell(volunteer.latitude, volunteer.longitude)


class VolunteerCheck(Base):
    """That a check or training was done, and when it expires: never the certificate itself."""

    __tablename__ = "volunteer_checks"
    __table_args__ = (sa.UniqueConstraint("volunteer_id", "check"),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    volunteer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("volunteers.id"), index=True)
    check: Mapped[str] = mapped_column(sa.String(32))
    done_on: Mapped[date] = mapped_column(sa.Date)
    expires_on: Mapped[date | None] = mapped_column(sa.Date, index=True)
    reminded_for: Mapped[date | None] = mapped_column(sa.Date)  # the expiry date a reminder went out for
    volunteer: Mapped[Volunteer] = relationship(back_populates="checks")


class TimeAway(Base):
    """Days a volunteer is away (holidays, illness): they are not asked for tasks on those days."""

    __tablename__ = "time_away"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    volunteer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("volunteers.id"), index=True)
    starts_on: Mapped[date] = mapped_column(sa.Date)
    ends_on: Mapped[date] = mapped_column(sa.Date)
    volunteer: Mapped[Volunteer] = relationship(back_populates="time_away")


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
    volunteer_language: Mapped[str | None] = mapped_column(sa.String(8))
    volunteer_gender: Mapped[str | None] = mapped_column(sa.String(16))
    person_ref: Mapped[str] = mapped_column(sa.String(64), default="", index=True)  # a pseudonym, for continuity
    status: Mapped[str] = mapped_column(sa.String(16), default="open")  # open, matched, unmatched, cancelled
    repeat_every_weeks: Mapped[int | None] = mapped_column(sa.Integer)
    repeat_occurrences: Mapped[int] = mapped_column(sa.Integer, default=1)
    occurrence: Mapped[int] = mapped_column(sa.Integer, default=1)  # which of the occurrences is being matched
    round: Mapped[int] = mapped_column(sa.Integer, default=0)  # batches of offers made so far
    given_back: Mapped[bool] = mapped_column(sa.Boolean, default=False)  # a volunteer cancelled: match it first
    unmatched_reason: Mapped[str | None] = mapped_column(sa.String(500))
    correlation_id: Mapped[str] = mapped_column(sa.String(64))
    offers: Mapped[list["Offer"]] = relationship(back_populates="request", order_by="Offer.created_at",
                                                 lazy="selectin")


class CancelledEarly(Base):
    """A cancellation that arrived before its request did (several workers, or a retry, can reorder events)."""

    __tablename__ = "cancelled_early"

    request_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


# open: waiting for an answer; accepted: the task is theirs; declined, expired, undeliverable: asked, no;
# withdrawn: someone else said yes first (or the request was cancelled); given_back: they cancelled after
# accepting; completed: done.
OFFER_STATUSES = ("open", "accepted", "declined", "expired", "undeliverable", "withdrawn", "given_back", "completed")


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
    status: Mapped[str] = mapped_column(sa.String(16), default="open")  # OFFER_STATUSES
    round: Mapped[int] = mapped_column(sa.Integer, default=1)
    occurrence: Mapped[int] = mapped_column(sa.Integer, default=1)
    distance_km: Mapped[float] = mapped_column(sa.Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # when notify says the SMS went
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)  # set once it is sent
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    hours: Mapped[float | None] = mapped_column(sa.Float)
    request: Mapped[MatchRequest] = relationship(back_populates="offers")
    volunteer: Mapped[Volunteer] = relationship()
