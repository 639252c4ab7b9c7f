"""How matching decides who is asked, and what happens when they answer."""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.matching.model import CancelledEarly, MatchRequest, Offer, Volunteer, VolunteerCheck, outbox
from services.matching.rules import Candidate, Facts, Policy, distance_km, exclusion, explain, rank, task_slots
from services.matching.search import nearby, prefilter
from shared.communities import get as community
from shared.contracts import Event
from shared.clock import utcnow

WHEN = ("window_start", "window_end", "window_days", "window_part")
REQUEST_FIELDS = ("community", "support_type", "urgency", "latitude", "longitude", "area", "volunteer_language",
                  "volunteer_gender", "person_ref", "repeat_every_weeks", "repeat_occurrences") + WHEN
HOLDING = ("accepted", "completed")  # offers that are tasks


def current_offers(request: MatchRequest) -> list[Offer]:
    """The offers for the occurrence being matched (a recurring request has one task per occurrence)."""
    return [o for o in request.offers if o.occurrence == request.occurrence]


def _free_code(session: Session) -> str:
    taken = set(session.scalars(sa.select(Offer.code).where(Offer.status.in_(("open", "accepted")))))
    while True:
        code = f"{secrets.randbelow(9000) + 1000}"
        if code not in taken:
            return code


def facts_for(session: Session, request: MatchRequest, found: list[tuple[Volunteer, float]],
              now: datetime, policy: Policy) -> dict:
    """What the rules need about each volunteer found: their load, their tasks by week, and any history here."""
    ids = [v.id for v, _ in found]
    # Someone whose offer was withdrawn (another said yes first) may be asked again if the task comes back.
    asked = {o.volunteer_id for o in current_offers(request) if o.status != "withdrawn"}
    facts = {v.id: Facts(distance_km=d, asked=v.id in asked) for v, d in found}
    if not ids:
        return facts
    since = now - timedelta(days=policy.recent_days)
    for volunteer_id, count in session.execute(
            sa.select(Offer.volunteer_id, sa.func.count()).where(Offer.volunteer_id.in_(ids), Offer.created_at >= since)
            .group_by(Offer.volunteer_id)):
        facts[volunteer_id].recent_load = count
    held = session.execute(
        sa.select(Offer.volunteer_id, Offer.answered_at, MatchRequest.window_start, MatchRequest.person_ref)
        .join(MatchRequest).where(Offer.volunteer_id.in_(ids), Offer.status.in_(HOLDING)))
    for volunteer_id, answered_at, window_start, person_ref in held:
        day = (window_start or answered_at or now).date()
        monday = day - timedelta(days=day.weekday())
        facts[volunteer_id].tasks_in_week[monday] = facts[volunteer_id].tasks_in_week.get(monday, 0) + 1
        if request.person_ref and person_ref == request.person_ref:
            facts[volunteer_id].helped_before = True
    return facts


def assess(session: Session, request: MatchRequest, now: datetime, policy: Policy,
           everyone: bool = False) -> tuple[list[Candidate], Counter]:
    """The ranked candidates for a request, and how many volunteers each rule ruled out.

    Normally only volunteers near enough, and passing the rules the database can judge (search.prefilter), are
    looked at, through the index; then the exclusion counts cover only those. `everyone` looks at the whole
    community, to tell a coordinator why nobody was found."""
    zone = community(request.community).zone
    slots = task_slots(request, zone, now.astimezone(zone).date())
    if everyone:
        volunteers = session.scalars(sa.select(Volunteer).where(Volunteer.community == request.community)).all()
        found = [(v, distance_km(v.latitude, v.longitude, request.latitude, request.longitude)) for v in volunteers]
    else:
        found = nearby(session, request.community, request.latitude, request.longitude, policy.request_radius_km,
                       where=prefilter(request, [day for day, _ in slots]))
    facts = facts_for(session, request, found, now, policy)
    excluded: Counter = Counter()
    eligible = []
    for volunteer, _ in found:
        rule = exclusion(volunteer, request, facts[volunteer.id], slots, policy)
        if rule is None:
            eligible.append((volunteer, facts[volunteer.id]))
        else:
            excluded[rule] += 1
    return rank(eligible, policy), excluded


def unmatched(session: Session, request: MatchRequest, reason: str) -> None:
    """Give up on a request and tell the coordinator why."""
    request.status = "unmatched"
    request.unmatched_reason = reason[:500]
    outbox.add(session, "request.unmatched", {"request_id": request.request_id, "reason": request.unmatched_reason},
               correlation_id=request.correlation_id)


def offer_next(session: Session, request: MatchRequest, now: datetime | None = None,
               policy: Policy | None = None) -> None:
    """Offer the request to the next batch of the best volunteers not yet asked; with nobody left, or after the
    last round, it is unmatched with the reasons."""
    now, policy = now or utcnow(), policy or Policy.from_env()
    asked = len({o.volunteer_id for o in current_offers(request)})
    if request.round >= policy.max_rounds:
        unmatched(session, request, f"{asked} volunteers asked in {request.round} rounds; nobody said yes")
        return
    candidates, _ = assess(session, request, now, policy)
    batch = candidates[:policy.batch_size]
    regular = previous_volunteer(request) if request.round == 0 else None
    if regular is not None and any(c.volunteer.id == regular for c in candidates):
        batch = [c for c in candidates if c.volunteer.id == regular]  # the same volunteer each time, if they can
    if not batch:
        _, excluded = assess(session, request, now, policy, everyone=True)
        excluded.pop("already_asked", None)
        prefix = f"{asked} asked, none said yes; of the rest: " if asked else "nobody eligible: "
        unmatched(session, request, prefix + explain(excluded))
        return
    request.round += 1
    for candidate in batch:
        offer = Offer(request=request, volunteer=candidate.volunteer, code=_free_code(session), round=request.round,
                      occurrence=request.occurrence, distance_km=round(candidate.distance_km, 2), created_at=now)
        session.add(offer)
        session.flush()
        outbox.add(session, "offer.made", {
            "offer_id": offer.id, "request_id": request.request_id, "volunteer_id": candidate.volunteer.id,
            "phone": candidate.volunteer.phone, "code": offer.code, "support_type": request.support_type,
            "area": request.area, "urgency": request.urgency, "community": request.community,
            "round": request.round, "occurrence": request.occurrence, "occurrences": request.repeat_occurrences,
            "language": first_language(candidate.volunteer), **{name: getattr(request, name) for name in WHEN},
        }, correlation_id=request.correlation_id)


def volunteer_joined(session: Session, volunteer: Volunteer) -> None:
    """Tell metrics a volunteer joined (their id, community and status: nothing that names them)."""
    session.flush()
    outbox.add(session, "volunteer.registered", {"volunteer_id": volunteer.id, "community": volunteer.community,
                                                 "status": volunteer.status})


def set_status(session: Session, volunteer: Volunteer, status: str) -> None:
    """Pause, resume or record that a volunteer left, and tell metrics when it is a change."""
    if status != volunteer.status:
        outbox.add(session, "volunteer.status_changed", {
            "volunteer_id": volunteer.id, "community": volunteer.community, "status": status,
            "previous": volunteer.status})
        volunteer.status = status


def first_language(volunteer: Volunteer) -> str | None:
    """The language a volunteer is texted in: the first they listed."""
    return (volunteer.languages or [None])[0]


def previous_volunteer(request: MatchRequest):
    """Who did the previous occurrence of a recurring request, if anyone."""
    return next((o.volunteer_id for o in request.offers
                 if o.occurrence == request.occurrence - 1 and o.status == "completed"), None)


def next_occurrence(session: Session, request: MatchRequest, now: datetime) -> None:
    """Move a recurring request on to its next occurrence and match it, asking the same volunteer first."""
    request.occurrence += 1
    request.round, request.given_back, request.status = 0, False, "open"
    if request.window_start is not None:
        shift = timedelta(weeks=request.repeat_every_weeks or 1)
        request.window_start, request.window_end = request.window_start + shift, request.window_end + shift
    session.flush()
    offer_next(session, request, now)


def withdraw(session: Session, offer: Offer, reason: str) -> None:
    """Withdraw an open offer and tell the volunteer."""
    offer.status = "withdrawn"
    outbox.add(session, "offer.withdrawn", {
        "offer_id": offer.id, "request_id": offer.request_id, "volunteer_id": offer.volunteer_id,
        "phone": offer.volunteer.phone, "code": offer.code, "reason": reason,
    }, correlation_id=offer.request.correlation_id)


def accept(session: Session, offer: Offer, now: datetime, by: str = "volunteer") -> None:
    """The volunteer has the task: every other open offer for the request is withdrawn."""
    request = offer.request
    offer.status = "accepted"
    offer.answered_at = now
    request.status = "matched"
    session.flush()  # the one-accepted-offer index refuses a second acceptance here
    for other in current_offers(request):
        if other is not offer and other.status == "open":
            withdraw(session, other, "taken")
    ids = {"offer_id": offer.id, "request_id": offer.request_id, "volunteer_id": offer.volunteer_id}
    outbox.add(session, "offer.accepted", {
        **ids, "phone": offer.volunteer.phone, "code": offer.code, "by": by, "community": request.community,
        "language": first_language(offer.volunteer), **{name: getattr(request, name) for name in WHEN},
    }, correlation_id=request.correlation_id)
    outbox.add(session, "request.matched", ids, correlation_id=request.correlation_id)


def next_round_if_all_answered(session: Session, request: MatchRequest, now: datetime) -> None:
    """When nobody in the current batch can still say yes, ask the next batch."""
    if request.status == "open" and not any(o.status in ("open", "accepted") for o in current_offers(request)):
        offer_next(session, request, now)


def locked(session: Session, request_id) -> MatchRequest | None:
    """A request, locked until the transaction ends (on PostgreSQL), so two replies are judged one at a time."""
    return session.scalar(sa.select(MatchRequest).where(MatchRequest.request_id == request_id)
                          .with_for_update().execution_options(populate_existing=True))


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
    request = locked(session, request.request_id)
    request.status = "cancelled"
    for offer in request.offers:
        if offer.status == "open":
            withdraw(session, offer, "cancelled")
        elif offer.status == "accepted":
            offer.status = "withdrawn"
            outbox.add(session, "offer.withdrawn", {
                "offer_id": offer.id, "request_id": offer.request_id, "volunteer_id": offer.volunteer_id,
                "phone": offer.volunteer.phone, "code": offer.code, "reason": "cancelled"},
                correlation_id=request.correlation_id)


def _volunteer_by_phone(session: Session, phone: str) -> Volunteer | None:
    return session.scalar(sa.select(Volunteer).where(Volunteer.phone == phone))


def on_sms_received(session: Session, event: Event) -> None:
    """Act on what a volunteer texted: YES, NO, DONE, CANCEL with a code (or without, when only one fits);
    PAUSE, RESUME. (STOP and START arrive as contact.opted_out and contact.opted_in.)"""
    p, now = event.payload, utcnow()
    keyword, code = p.get("keyword"), p.get("code")
    volunteer = _volunteer_by_phone(session, p["from_phone"])
    if volunteer is None:
        if keyword not in ("STOP", "START", "HELP"):  # notify answers those itself
            unresolved(session, event, "unknown_sender")
        return
    if keyword is None:  # notify answered it, unless it never texted them: then say how to answer
        if session.scalar(sa.select(Offer.id).where(Offer.volunteer_id == volunteer.id).limit(1)) is None:
            unresolved(session, event, "nothing_open", volunteer)
        return
    if keyword in ("PAUSE", "RESUME"):
        if volunteer.status != "left":
            set_status(session, volunteer, "paused" if keyword == "PAUSE" else "active")
        return
    wanted = {"YES": ("open",), "NO": ("open",), "DONE": ("accepted",), "CANCEL": ("accepted",)}.get(keyword)
    if wanted is None:
        return
    query = sa.select(Offer).where(Offer.volunteer_id == volunteer.id, Offer.status.in_(wanted))
    offers = session.scalars(query.where(Offer.code == code) if code else query.order_by(Offer.created_at)).all()
    if len(offers) != 1:  # a code that is not theirs or no longer open, or a bare YES with several open: say so
        reason = "several_open" if len(offers) > 1 else "no_such_offer" if code else "nothing_open"
        unresolved(session, event, reason, volunteer, [o.code for o in offers])
        return
    request = locked(session, offers[0].request_id)
    offer = session.get(Offer, offers[0].id, populate_existing=True)
    if offer.status not in wanted:
        return  # changed while we waited for the lock
    if keyword == "YES":
        if request.status == "open":
            accept(session, offer, now)
        return
    if keyword == "NO":
        offer.status, offer.answered_at = "declined", now
        next_round_if_all_answered(session, request, now)
    elif keyword == "DONE":
        offer.status, offer.completed_at, offer.hours = "completed", now, p.get("hours")
        outbox.add(session, "task.completed", {
            "request_id": request.request_id, "offer_id": offer.id, "volunteer_id": volunteer.id,
            "community": request.community, "support_type": request.support_type, "hours": offer.hours,
            "occurrence": request.occurrence, "occurrences": request.repeat_occurrences,
        }, correlation_id=request.correlation_id)
        if request.occurrence < request.repeat_occurrences:
            next_occurrence(session, request, now)
        else:
            request.status = "completed"
    else:  # CANCEL: the volunteer gives the task back; it goes to the front of matching again
        offer.status, offer.answered_at = "given_back", now
        request.status, request.given_back, request.round, request.urgency = "open", True, 0, "urgent"
        outbox.add(session, "task.given_back", {"request_id": request.request_id, "offer_id": offer.id,
                                                "volunteer_id": volunteer.id}, correlation_id=request.correlation_id)
        session.flush()
        offer_next(session, request, now)


def unresolved(session: Session, event: Event, reason: str, volunteer: Volunteer | None = None,
               codes: list[str] | None = None) -> None:
    """Ask notify to tell the sender why their SMS did nothing (and, for an unknown number, the coordinator)."""
    p = event.payload
    outbox.add(session, "reply.unresolved", {
        "phone": p["from_phone"], "reason": reason, "keyword": p.get("keyword"), "code": p.get("code"),
        "codes": codes or [], "language": first_language(volunteer) if volunteer else None,
    }, correlation_id=event.correlation_id)


def on_sms_sent(session: Session, event: Event) -> None:
    """An offer's SMS went: its time to answer starts now."""
    offer_id = event.payload.get("offer_id")
    offer = session.get(Offer, offer_id) if offer_id and event.payload["purpose"] == "offer" else None
    if offer is not None and offer.sent_at is None:
        offer.sent_at = event.occurred_at
        minutes = Policy.from_env().offer_minutes.get(offer.request.urgency, 30)
        offer.expires_at = offer.sent_at + timedelta(minutes=minutes)


def on_sms_failed(session: Session, event: Event) -> None:
    """An offer that could not be delivered counts as declined at once."""
    offer_id = event.payload.get("offer_id")
    offer = session.get(Offer, offer_id) if offer_id else None
    if offer is not None and offer.status == "open":
        request = locked(session, offer.request_id)
        offer.status = "undeliverable"
        next_round_if_all_answered(session, request, utcnow())


# --- timed jobs (run by the scheduler in one process; each checks state first, so running twice is harmless) ---

def expire_offers(session: Session, now: datetime) -> int:
    """Expire offers nobody answered in time, and ask the next batch where a whole batch has gone quiet."""
    due = session.scalars(sa.select(Offer).where(Offer.status == "open", Offer.expires_at <= now)).all()
    for offer in due:
        offer.status = "expired"
    session.flush()
    for request_id in {offer.request_id for offer in due}:
        next_round_if_all_answered(session, locked(session, request_id), now)
    return len(due)


def remind_expiring_checks(session: Session, today: date, days_ahead: int = 30) -> int:
    """Tell the volunteer and the coordinator, once, when a check expires within `days_ahead` days."""
    due = session.scalars(sa.select(VolunteerCheck).where(
        VolunteerCheck.expires_on.is_not(None), VolunteerCheck.expires_on <= today + timedelta(days=days_ahead),
        VolunteerCheck.expires_on >= today)).all()
    sent = 0
    for check in due:
        if check.reminded_for == check.expires_on or check.volunteer.status == "left":
            continue
        check.reminded_for = check.expires_on
        outbox.add(session, "volunteer.check_expiring", {
            "volunteer_id": check.volunteer_id, "community": check.volunteer.community,
            "phone": check.volunteer.phone, "check": check.check, "expires_on": check.expires_on.isoformat()})
        sent += 1
    return sent


def on_contact_changed(session: Session, event: Event) -> None:
    """A volunteer opted out of SMS, back in, or their number cannot take texts: offer by SMS only when reachable.

    An invalid number counts as opted out until a coordinator records a new phone."""
    volunteer = _volunteer_by_phone(session, event.payload["phone"])
    if volunteer is not None:
        volunteer.sms_opted_out_at = None if event.type == "contact.opted_in" else event.payload["at"]


HANDLERS = {"request.submitted": on_request_submitted, "request.updated": on_request_updated,
            "request.cancelled": on_request_cancelled, "sms.received": on_sms_received, "sms.sent": on_sms_sent,
            "sms.failed": on_sms_failed, "contact.opted_out": on_contact_changed,
            "contact.opted_in": on_contact_changed, "contact.invalid": on_contact_changed}
