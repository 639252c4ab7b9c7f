"""How matching decides who is asked, and what happens when they answer."""

from __future__ import annotations

import math
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.matching.model import CancelledEarly, MatchRequest, Offer, Volunteer, outbox
from shared.contracts import Event
from shared.outbox import utcnow
from shared.taxonomy import skill_for

EARTH_RADIUS_KM = 6371.0088
WHEN = ("window_start", "window_end", "window_days", "window_part")
REQUEST_FIELDS = ("community", "support_type", "urgency", "latitude", "longitude", "area") + WHEN


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points, in kilometres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def nearest_candidate(volunteers: list[Volunteer], request: MatchRequest,
                      exclude: set) -> Volunteer | None:
    """The nearest active volunteer with the skill, within the distance they will travel, not already asked."""
    skill = skill_for(request.support_type)
    in_range = [
        (distance_km(v.latitude, v.longitude, request.latitude, request.longitude), v.name, v)
        for v in volunteers
        if v.active and skill in v.skills and v.id not in exclude
    ]
    in_range = [item for item in in_range if item[0] <= item[2].max_distance_km]
    return min(in_range, key=lambda item: item[:2])[2] if in_range else None


def _free_code(session: Session) -> str:
    taken = set(session.scalars(sa.select(Offer.code).where(Offer.status == "open")))
    while True:
        code = f"{secrets.randbelow(9000) + 1000}"
        if code not in taken:
            return code


def offer_next(session: Session, request: MatchRequest) -> None:
    """Offer the request to the best volunteer not yet asked; with nobody left, it is unmatched."""
    asked = {offer.volunteer_id for offer in request.offers}
    volunteers = session.scalars(
        sa.select(Volunteer).where(Volunteer.community == request.community, Volunteer.active.is_(True))).all()
    volunteer = nearest_candidate(list(volunteers), request, asked)
    if volunteer is None:
        request.status = "unmatched"
        reason = "every eligible volunteer declined" if asked else "no active volunteer with that skill in range"
        outbox.add(session, "request.unmatched", {"request_id": request.request_id, "reason": reason},
                   correlation_id=request.correlation_id)
        return
    offer = Offer(request=request, volunteer=volunteer, code=_free_code(session))
    session.add(offer)
    session.flush()
    outbox.add(session, "offer.made", {
        "offer_id": offer.id, "request_id": request.request_id, "volunteer_id": volunteer.id,
        "phone": volunteer.phone, "code": offer.code, "support_type": request.support_type,
        "area": request.area, **{name: getattr(request, name) for name in WHEN},
    }, correlation_id=request.correlation_id)


def on_request_submitted(session: Session, event: Event) -> None:
    """Take a new request into matching and make the first offer.

    Events about one request can arrive out of order: if its update came first, matching already has the newer
    details and has offered it; if its cancellation came first, it is taken in as cancelled and never offered."""
    p = event.payload
    if session.get(MatchRequest, p["request_id"]) is not None:
        return
    request = MatchRequest(request_id=p["request_id"], correlation_id=event.correlation_id,
                           **{name: p[name] for name in REQUEST_FIELDS})
    session.add(request)
    if session.get(CancelledEarly, p["request_id"]) is not None:
        request.status = "cancelled"
        return
    session.flush()
    offer_next(session, request)


def on_request_updated(session: Session, event: Event) -> None:
    """Keep matching's copy of an open request current (an update carries every field matching uses)."""
    request = session.get(MatchRequest, event.payload["request_id"])
    if request is None:
        on_request_submitted(session, event)  # it overtook its request.submitted, whose details are older
    elif request.status == "open":
        for name in REQUEST_FIELDS:
            setattr(request, name, event.payload[name])


def on_request_cancelled(session: Session, event: Event) -> None:
    """Stop matching a cancelled request, and withdraw its open offers."""
    request = session.get(MatchRequest, event.payload["request_id"])
    if request is None:
        if session.get(CancelledEarly, event.payload["request_id"]) is None:
            session.add(CancelledEarly(request_id=event.payload["request_id"]))
        return
    request.status = "cancelled"
    for offer in request.offers:
        if offer.status == "open":
            offer.status = "withdrawn"


def on_sms_received(session: Session, event: Event) -> None:
    """Act on a volunteer's YES or NO to one of their open offers; anything else is not matching's business."""
    keyword, code = event.payload.get("keyword"), event.payload.get("code")
    if keyword not in ("YES", "NO") or not code:
        return
    offer = session.scalars(
        sa.select(Offer).join(Volunteer)
        .where(Offer.code == code, Offer.status == "open", Volunteer.phone == event.payload["from_phone"])
    ).one_or_none()
    if offer is None or offer.request.status != "open":
        return
    offer.answered_at = utcnow()
    if keyword == "NO":
        offer.status = "declined"
        offer_next(session, offer.request)
        return
    offer.status = "accepted"
    offer.request.status = "matched"
    ids = {"offer_id": offer.id, "request_id": offer.request_id, "volunteer_id": offer.volunteer_id}
    outbox.add(session, "offer.accepted", {**ids, "phone": offer.volunteer.phone, "code": offer.code},
               correlation_id=offer.request.correlation_id)
    outbox.add(session, "request.matched", ids, correlation_id=offer.request.correlation_id)


HANDLERS = {"request.submitted": on_request_submitted, "request.updated": on_request_updated,
            "request.cancelled": on_request_cancelled, "sms.received": on_sms_received}
