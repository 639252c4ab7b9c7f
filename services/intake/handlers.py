"""How intake keeps each request's status and timeline current from matching's events."""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.intake.model import SupportRequest, outbox
from shared.contracts import Event

TIMELINE = {
    "offer.made": ("offered", "Offered to a volunteer (ref {code})"),
    "offer.accepted": ("accepted", "A volunteer accepted (ref {code})"),
    "request.matched": ("matched", "Matched with a volunteer"),
    "request.unmatched": ("unmatched", "{reason}"),
    "task.completed": ("completed", "The volunteer reported it done"),
    "task.given_back": ("given back", "The volunteer can no longer do it; asking others first"),
}
# The statuses an event moves a request on from, and to.
MOVES = {
    "offer.made": ({"submitted", "unmatched"}, "offered"),
    "request.matched": ({"submitted", "offered", "unmatched"}, "matched"),
    "request.unmatched": ({"submitted", "offered"}, "unmatched"),
    "task.completed": ({"matched"}, "completed"),
    "task.given_back": ({"matched"}, "offered"),
}


def follow_matching(session: Session, event: Event) -> None:
    """Note what matching did on the request's timeline, and move its status on."""
    p = event.payload
    request = session.get(SupportRequest, p["request_id"])
    if request is None:
        return
    what, detail = TIMELINE[event.type]
    sources, status = MOVES.get(event.type, (set(), None))
    if event.type == "task.completed":
        if p["occurrence"] < p["occurrences"]:
            detail, status = f"Occurrence {p['occurrence']} of {p['occurrences']} done", None  # still matched
        if p.get("hours"):
            detail += f" ({p['hours']:g} hours)"
    request.note(what, detail.format(**p), "matching", at=event.occurred_at)
    if event.type == "offer.accepted":
        share_details(session, request, event)
    if status and request.status in sources:
        request.status = status
        if status == "unmatched":
            request.outcome = p["reason"]
        elif status == "completed":
            request.outcome = "Completed"


HANDLERS = {event_type: follow_matching for event_type in TIMELINE}


def share_details(session: Session, request: SupportRequest, event: Event) -> None:
    """Give the volunteer who accepted, and only them, what they need to help: the person's first name, address
    and phone where the person consented to sharing them; otherwise nothing, and the coordinator calls."""
    p = event.payload
    shared = request.consent("share_contact")
    outbox.add(session, "task.details_shared", {
        "offer_id": p["offer_id"], "request_id": request.id, "phone": p["phone"], "code": p["code"],
        "language": p.get("language"), "community": request.community, "shared": shared,
        "first_name": request.person_name.split()[0] if shared and request.person_name.strip() else None,
        "address": ", ".join(part for part in (request.address, request.postcode) if part) if shared else None,
        "person_phone": request.person_phone if shared else None,
    }, correlation_id=event.correlation_id)
