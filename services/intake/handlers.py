"""How intake keeps each request's status current from matching's events."""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.intake.model import SupportRequest
from shared.contracts import Event

STATUS_AFTER = {"offer.made": "offered", "request.matched": "matched", "request.unmatched": "unmatched"}


def advance_status(session: Session, event: Event) -> None:
    """Move the request the event is about to the status the event implies."""
    request = session.get(SupportRequest, event.payload["request_id"])
    if request is not None:
        request.advance(STATUS_AFTER[event.type])


HANDLERS = {event_type: advance_status for event_type in STATUS_AFTER}
