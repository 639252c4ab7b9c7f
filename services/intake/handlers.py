"""How intake keeps each request's status and timeline current from matching's events."""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.intake.model import SupportRequest
from shared.contracts import Event

STATUS_AFTER = {"offer.made": "offered", "request.matched": "matched", "request.unmatched": "unmatched",
                "offer.accepted": None}
TIMELINE = {
    "offer.made": ("offered", "Offered to a volunteer (ref {code})"),
    "offer.accepted": ("accepted", "A volunteer accepted (ref {code})"),
    "request.matched": ("matched", "Matched with a volunteer"),
    "request.unmatched": ("unmatched", "{reason}"),
}


def follow_matching(session: Session, event: Event) -> None:
    """Note what matching did on the request's timeline, and move its status on."""
    request = session.get(SupportRequest, event.payload["request_id"])
    if request is None:
        return
    what, detail = TIMELINE[event.type]
    request.note(what, detail.format(**event.payload), "matching", at=event.occurred_at)
    if (status := STATUS_AFTER[event.type]) and request.advance(status) and status == "unmatched":
        request.outcome = event.payload["reason"]


HANDLERS = {event_type: follow_matching for event_type in TIMELINE}
