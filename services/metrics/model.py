"""Metrics' tables: counts of events by day and type. No names, phones or addresses."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.outbox import Outbox, OutboxMixin, ProcessedEventMixin


class Base(DeclarativeBase):
    pass


class OutboxEvent(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProcessedEvent(ProcessedEventMixin, Base):
    __tablename__ = "processed_events"


outbox = Outbox(OutboxEvent)


class DailyTally(Base):
    """How many events of one type happened on one day (UTC)."""

    __tablename__ = "daily_tallies"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    event_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer, default=0)
