"""Metrics' tables: one fact per event it heard, and the group activities coordinators log.

Only what counting needs: kinds, sources, communities, dates, hours, and the pseudonymous ids that distinct counts
need (the person's reference, a volunteer's id, an organisation's name). No names, phones or addresses.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

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


class Fact(Base):
    """What one event says that counting needs, keyed by the event, so it is never counted twice."""

    __tablename__ = "facts"
    __table_args__ = (sa.Index("ix_facts_type_day", "event_type", "community", "day"),)

    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    event_type: Mapped[str] = mapped_column(sa.String(64))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    day: Mapped[date] = mapped_column(sa.Date)  # in the community's time zone
    community: Mapped[str | None] = mapped_column(sa.String(64))
    request_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)
    source: Mapped[str | None] = mapped_column(sa.String(20))
    support_type: Mapped[str | None] = mapped_column(sa.String(40))
    person_ref: Mapped[str | None] = mapped_column(sa.String(64))
    is_carer: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    volunteer_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    organisation: Mapped[str | None] = mapped_column(sa.String(200))
    hours: Mapped[float | None] = mapped_column(sa.Float)
    status: Mapped[str | None] = mapped_column(sa.String(12))  # a volunteer's, when registered or changed


ACTIVITY_KINDS = ("bereavement_group", "death_cafe", "dying_matters_event", "future_planning_session", "other")
ORGANISATION_TYPES = ("voluntary", "community", "faith", "social_enterprise", "pcn", "hospice", "other")


class Activity(Base):
    """A group activity volunteers ran (a bereavement group, a Death Cafe ...), logged by a coordinator."""

    __tablename__ = "activities"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    community: Mapped[str] = mapped_column(sa.String(64), index=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    held_on: Mapped[date] = mapped_column(sa.Date, index=True)
    organisation: Mapped[str | None] = mapped_column(sa.String(200))
    organisation_type: Mapped[str | None] = mapped_column(sa.String(40))
    volunteer_ids: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    attendance: Mapped[int] = mapped_column(sa.Integer)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
