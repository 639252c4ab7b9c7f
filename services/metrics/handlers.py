"""How metrics counts: each event it hears becomes one fact, keyed by the event, so a redelivery counts once.

Every count is then a query over the facts (services/metrics/counts.py). What a fact takes from elsewhere (the
community of an outcome, from its request's fact; the day, in the community's time zone) is filled in when the
request's fact arrives, even after the outcome's, and can be worked out again at any time: `ccs metrics rebuild`
does, after a community's time zone changed, and gives the same answer as counting live did.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.metrics.model import Fact
from shared import communities
from shared.contracts import EVENTS, Event
from shared.topology import PERSONAL


def place(session: Session, fact: Fact) -> None:
    """Give a fact its community (an outcome without one takes its request's) and its day in that community."""
    if fact.community is None and fact.request_id is not None:
        fact.community = session.scalar(sa.select(Fact.community).where(
            Fact.request_id == fact.request_id, Fact.community.is_not(None)).limit(1))
    zone = communities.all_communities().get(fact.community or "")
    fact.day = (fact.occurred_at.astimezone(zone.zone) if zone else fact.occurred_at).date()


def record(session: Session, event: Event) -> None:
    """Keep what the event says that counting needs, and nothing that names anyone."""
    if session.get(Fact, event.event_id) is not None:
        return
    p = event.payload
    fact = Fact(
        event_id=event.event_id, event_type=event.type, occurred_at=event.occurred_at, community=p.get("community"),
        request_id=p.get("request_id"), source=p.get("source"), support_type=p.get("support_type"),
        person_ref=p.get("person_ref") or None, is_carer=bool(p.get("is_carer")), volunteer_id=p.get("volunteer_id"),
        organisation=p.get("referrer_organisation"), hours=p.get("hours"),
        status=p.get("status") if event.type.startswith("volunteer.") else None)
    place(session, fact)
    session.add(fact)
    if fact.community is not None and fact.request_id is not None:
        # an outcome that overtook its request (a cancellation published a moment after it) takes its place now
        for early in session.scalars(sa.select(Fact).where(Fact.request_id == fact.request_id,
                                                           Fact.community.is_(None))):
            place(session, early)


def rebuild(session: Session) -> int:
    """Work out every fact's community and day again; returns how many changed."""
    changed = 0
    for fact in session.scalars(sa.select(Fact).order_by(Fact.occurred_at)).all():
        before = (fact.community, fact.day)
        place(session, fact)
        changed += (fact.community, fact.day) != before
    return changed


HANDLERS = {event_type: record for event_type, _ in EVENTS if event_type not in PERSONAL}
