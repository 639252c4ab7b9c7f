"""How metrics counts: one more of the event's type on the day it happened."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.metrics.model import DailyTally
from shared.contracts import EVENTS, Event


def tally(session: Session, event: Event) -> None:
    """Add one to the day's count for the event's type."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(DailyTally).values(day=event.occurred_at.date(), event_type=event.type, count=1)
    session.execute(statement.on_conflict_do_update(
        index_elements=[DailyTally.day, DailyTally.event_type],
        set_={"count": DailyTally.count + 1},
    ))


HANDLERS = {event_type: tally for event_type, _ in EVENTS}
