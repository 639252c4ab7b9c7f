"""What notify texts, and when.

An offer to each volunteer asked; the details of the task to the one who accepted (only what the person
consented to share); reminders the day before and two hours before, and a prompt for DONE afterwards;
word that an offer closed; an answer to a reply matching could not act on; a reminder that a check expires.

Non-urgent messages wait out the community's quiet hours. A message is queued once per key, so a redelivered
event never texts anyone twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.notify.messages import KEYWORD_IN, language_of, offer_text, render, window_text
from services.notify.model import Contact, OutgoingMessage
from shared import communities
from shared.contracts import Event
from shared.clock import utcnow
from shared.taxonomy import CHECKS

REMINDERS = (("reminder_day_before", timedelta(days=-1), "start"), ("reminder_soon", timedelta(hours=-2), "start"),
             ("prompt_done", timedelta(hours=1), "end"))


def community_of(slug: str | None) -> communities.Community | None:
    """The community a message is sent for, if it is one we know."""
    return communities.all_communities().get(slug or "")


def queue_message(session: Session, key: str, purpose: str, to: str, body: str, correlation_id: str, *,
                  community: str | None = None, urgent: bool = False, not_before: datetime | None = None,
                  now: datetime | None = None) -> None:
    """Queue an SMS for the sender, once per key; non-urgent ones wait until the community's quiet hours end."""
    if session.scalar(sa.select(OutgoingMessage.id).where(OutgoingMessage.key == key)) is not None:
        return
    now = now or utcnow()
    send_at = max(not_before or now, now)
    place = community_of(community)
    if not urgent and place is not None and (quiet_end := place.quiet_until(send_at)) is not None:
        send_at = quiet_end
    session.add(OutgoingMessage(key=key, purpose=purpose, to_phone=to, body=body, correlation_id=correlation_id,
                                from_phone=place.sms_from if place else None,
                                next_attempt_at=send_at if send_at > now else None))


def remember_language(session: Session, phone: str, language: str | None) -> str:
    """Keep the language a volunteer is texted in, so replies to their own texts use it too."""
    contact = Contact.of(session, phone)
    if language:
        contact.language = language_of(language)
    return contact.language or "en"


def language_for(session: Session, phone: str, given: str | None = None) -> str:
    """The language to text a phone in: as the event says, or as we last knew, or English."""
    if given:
        return language_of(given)
    contact = session.get(Contact, phone)
    return language_of(contact.language if contact else None)


def when_text(p: dict, community: str | None, language: str) -> str:
    """The event's window, as the community's clocks show it."""
    place = community_of(community)
    start, end = p.get("window_start"), p.get("window_end")
    if place is not None and start and end:
        start, end = start.astimezone(place.zone), end.astimezone(place.zone)
    return window_text(start, end, p.get("window_days"), p.get("window_part"), language)


def overrides(community: str | None) -> dict:
    place = community_of(community)
    return place.sms_templates if place else {}


def on_offer_made(session: Session, event: Event) -> None:
    """Text the volunteer the offer: the kind of help, district, window and code only."""
    p = event.payload
    language = remember_language(session, p["phone"], p.get("language"))
    body = offer_text(p["support_type"], p["area"], when_text(p, p["community"], language), p["code"], language,
                      overrides(p["community"]))
    queue_message(session, f"offer:{p['offer_id']}", "offer", p["phone"], body, event.correlation_id,
                  community=p["community"], urgent=p["urgency"] == "urgent")


def on_offer_accepted(session: Session, event: Event) -> None:
    """Schedule the reminders for an accepted task with a fixed time (the details come from intake)."""
    p = event.payload
    if not (p.get("window_start") and p.get("window_end")):
        return
    language = remember_language(session, p["phone"], p.get("language"))
    when = when_text(p, p.get("community"), language)
    now = utcnow()
    for name, offset, edge in REMINDERS:
        at = p[f"window_{edge}"] + offset
        if at > now:
            queue_message(session, f"{name}:{p['offer_id']}", "reminder", p["phone"],
                          render(name, language, overrides(p.get("community")), code=p["code"], when=when),
                          event.correlation_id, community=p.get("community"), not_before=at, now=now)


def on_details_shared(session: Session, event: Event) -> None:
    """Tell the volunteer who accepted what they need: the person's first name, address and phone where the
    person consented; otherwise that the coordinator will call."""
    p = event.payload
    language = language_for(session, p["phone"], p.get("language"))
    texts = overrides(p.get("community"))
    if p["shared"]:
        details = render("details", language, texts, first_name=p["first_name"] or "", code=p["code"],
                         address=p["address"] or "", phone=p["person_phone"] or "-")
    else:
        details = render("no_details", language, texts, code=p["code"])
    queue_message(session, f"accepted:{p['offer_id']}", "confirmation", p["phone"],
                  render("accepted", language, texts, code=p["code"], details=details), event.correlation_id,
                  community=p.get("community"), urgent=True)  # an answer to the volunteer's own YES


def cancel_reminders(session: Session, offer_id) -> None:
    """Drop the reminders still waiting for a task that is no longer the volunteer's, or is done."""
    keys = [f"{name}:{offer_id}" for name, _, _ in REMINDERS]
    for message in session.scalars(sa.select(OutgoingMessage).where(OutgoingMessage.key.in_(keys),
                                                                    OutgoingMessage.status == "queued")):
        message.status = "cancelled"


def on_offer_withdrawn(session: Session, event: Event) -> None:
    """Tell a volunteer their offer is no longer open, so a late YES is not a surprise."""
    p = event.payload
    cancel_reminders(session, p["offer_id"])
    language = language_for(session, p["phone"])
    name = "withdrawn_taken" if p["reason"] == "taken" else "withdrawn"
    queue_message(session, f"withdrawn:{p['offer_id']}", "withdrawn", p["phone"],
                  render(name, language, code=p["code"]), event.correlation_id, community=p.get("community"))


def on_task_ended(session: Session, event: Event) -> None:
    """A task done or given back needs no more reminders."""
    cancel_reminders(session, event.payload["offer_id"])


def on_reply_unresolved(session: Session, event: Event) -> None:
    """Answer an SMS that did nothing, saying why and what to send instead."""
    p = event.payload
    language = language_for(session, p["phone"], p.get("language"))
    if p["reason"] == "unknown_sender":
        body = render("unknown_sender", language)
    elif p["reason"] == "several_open":
        keyword = KEYWORD_IN.get(language, {}).get(p["keyword"], p["keyword"])
        body = render("which", language, codes=", ".join(p["codes"]), keyword=keyword, first=p["codes"][0])
    elif p["reason"] == "no_such_offer":
        body = render("not_open", language, code=p["code"])
    else:
        body = render("nothing_open", language, help=render("help", language))
    queue_message(session, f"answer:{event.event_id}", "answer", p["phone"], body, event.correlation_id,
                  urgent=True)


def on_check_expiring(session: Session, event: Event) -> None:
    """Remind a volunteer that a check or training runs out soon."""
    p = event.payload
    language = language_for(session, p["phone"])
    queue_message(session, f"expiring:{p['volunteer_id']}:{p['check']}:{p['expires_on']}", "reminder", p["phone"],
                  render("expiring", language, check=CHECKS[p["check"]].lower(), date=f"{p['expires_on']:%d %b %Y}"),
                  event.correlation_id, community=p.get("community"))


HANDLERS = {"offer.made": on_offer_made, "offer.accepted": on_offer_accepted, "task.details_shared": on_details_shared,
            "offer.withdrawn": on_offer_withdrawn, "task.completed": on_task_ended, "task.given_back": on_task_ended,
            "reply.unresolved": on_reply_unresolved, "volunteer.check_expiring": on_check_expiring}
