"""What notify knows: the phones it texts (and whether it may), the messages it sends and receives, when a message
may go, what each event makes it say, and what becomes of a send. Pure: no Flask, no database session, no
environment. The wording itself, the segment count and the reply parser are in services/notify/messages.py.

A message is queued once per key (`offer:<offer id>`, `reminder_soon:<offer id>` ...), so a redelivered event
never texts anyone twice. Non-urgent messages wait out the community's quiet hours.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Iterable

from services.notify.messages import (DAY_NAMES, KEYWORD_IN, MONTHS, TASKS_DONE, VIEWS, Reply, answer_for, kind_label,
                                     language_of, offer_text, render, visits_text, window_text)
from shared.communities import Community
from shared.contracts.intake import TaskDetailsShared, When
from shared.contracts.matching import (BefriendingEnded, BefriendingVisitOverdue, CheckExpiring, OfferMade,
                                       TrainingAnswered, TrainingInvited,
                                       OfferWithdrawn, ReplyAnswered, ReplyUnresolved)
from shared.taxonomy import CHECKS


class SendFailed(Exception):
    """A gateway could not send a message: `outcome` is "retry", "opted_out", "invalid" or "failed"; `reason`
    says why without personal data (e.g. "500 20500")."""

    def __init__(self, outcome: str, reason: str):
        super().__init__(f"{outcome}: {reason}")
        self.outcome, self.reason = outcome, reason


class NotInScope(Exception):
    """The number is none the acting user's communities texted or heard from."""


# --- the phones we text ----------------------------------------------------------------------------------------

@dataclass(eq=False)
class Contact:
    """A phone number we text or hear from: its language, and whether it may be texted at all.

    opted_out_at is set by STOP (or Twilio's error 21610) and cleared by START; invalid_at when Twilio says the
    number cannot take SMS (21211, 21614). Nothing but an opt-in confirmation goes to such a number.
    """

    phone: str
    language: str | None = None
    opted_out_at: datetime | None = None
    opted_in_at: datetime | None = None
    invalid_at: datetime | None = None
    invalid_reason: str | None = None

    def remember_language(self, language: str | None) -> str:
        """Keep the language the phone is texted in (when given), so answers to its own texts use it too."""
        if language:
            self.language = language_of(language)
        return self.language or "en"

    def opt_out(self, now: datetime) -> bool:
        """STOP: no more texts. True when it was not opted out before."""
        if self.opted_out_at is not None:
            return False
        self.opted_out_at = now
        return True

    def opt_in(self, now: datetime) -> bool:
        """START after a STOP: texts again. True when it had opted out."""
        if self.opted_out_at is None:
            return False
        self.opted_out_at, self.opted_in_at = None, now
        return True

    def mark_invalid(self, now: datetime, reason: str) -> None:
        """The provider says this number cannot take SMS."""
        self.invalid_at, self.invalid_reason = now, reason

    def refusal(self) -> str | None:
        """Why nothing may be sent to this number ("opted_out", "invalid_number"), or None when it may."""
        if self.opted_out_at:
            return "opted_out"
        return "invalid_number" if self.invalid_at else None


def language_for(contact: Contact | None, given: str | None = None) -> str:
    """The language to text a phone in: as the event says, or as we last knew, or English."""
    if given:
        return language_of(given)
    return language_of(contact.language if contact else None)


# --- the messages we send ----------------------------------------------------------------------------------------

# How long a message may stay `sending`: far longer than a gateway call takes (its timeout is 15 s), so only a
# sender that stopped between claiming a message and recording the provider's answer leaves one longer.
UNCONFIRMED_AFTER = timedelta(minutes=5)

# How far along a message is; a status callback that arrives late never moves it back.
PROGRESS = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "undelivered": 3, "failed": 3}


@dataclass(frozen=True)
class Retry:
    """How failed sends are retried: exponential back-off with jitter, a bounded number of times."""

    max_attempts: int = 5
    base_seconds: float = 2.0
    cap_seconds: float = 300.0

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """The wait after `attempts` failed tries: half the exponential step fixed, half random ("equal jitter")."""
        step = min(self.cap_seconds, self.base_seconds * 2 ** (attempts - 1))
        return timedelta(seconds=step / 2 + (rng or random).uniform(0, step / 2))


@dataclass(eq=False, kw_only=True)
class OutgoingMessage:
    """An SMS we mean to send. Its key makes it unique: the same offer is never texted twice.

    status: queued -> sending -> sent -> delivered or undelivered; or failed; or cancelled: it no longer applies
    (an offer withdrawn or accepted before its SMS went, a task's reminders once it ended, a "that offer is
    closed" text to someone whose offer never went), kept with why in `error` and shown as not sent. A message
    that a crash left in `sending` is never sent again (the provider may already have it): after a while it counts
    as sent, without a provider SID. An answer sent straight back in the webhook's reply is kept as sent at once.
    next_attempt_at: not before then (quiet hours, a reminder's time, or a retry's back-off); None means now.
    While `sending`, when a message still not recorded as sent counts as left by a crash.
    """

    key: str
    purpose: str
    to_phone: str
    body: str
    correlation_id: str
    from_phone: str | None = None  # the community's sender number
    community: str | None = None  # whose message it is: only that community's coordinators read it
    next_attempt_at: datetime | None = None
    status: str = "queued"
    attempts: int = 0
    provider_sid: str | None = None
    error: str | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    created_at: datetime | None = None  # set when it is kept
    traceparent: str | None = None  # the trace it was queued in; its send is part of that trace
    request_id: uuid.UUID | None = None  # the request an offer's or a task's SMS is about
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def offer_id(self) -> uuid.UUID | None:
        """The offer an offer's SMS is for (its key is `offer:<offer id>`), so matching can start its clock."""
        return uuid.UUID(self.key.split(":", 1)[1]) if self.purpose == "offer" else None

    def claim(self, now: datetime) -> None:
        """Mark it `sending` before the gateway is called; if nothing records the answer, it is left so."""
        self.status, self.attempts = "sending", (self.attempts or 0) + 1
        self.next_attempt_at = now + UNCONFIRMED_AFTER  # when it counts as left by a stopped sender

    def sent(self, provider_sid: str, now: datetime) -> None:
        """The gateway took it."""
        self.status, self.provider_sid, self.sent_at, self.error, self.next_attempt_at = \
            "sent", provider_sid, now, None, None

    def settle_unconfirmed(self, now: datetime) -> None:
        """Count it as sent (without a SID), as a stopped sender left it: it is never sent again."""
        self.status, self.sent_at, self.next_attempt_at = "sent", now, None
        self.error = "unconfirmed: the sender stopped before Twilio's answer was recorded"

    def retry_later(self, now: datetime, retry: Retry, reason: str) -> bool:
        """Queue it again after a back-off, unless it has had all its attempts. True when it will be retried."""
        self.error = reason
        if self.attempts >= retry.max_attempts:
            return False
        self.status, self.next_attempt_at = "queued", now + retry.delay(self.attempts)
        return True

    def fail(self, reason: str) -> None:
        """It will not be sent."""
        self.status, self.error, self.next_attempt_at = "failed", reason, None

    def cancel(self, why: str | None = None) -> None:
        """It will not be sent: it no longer applies (`why` is kept, for the conversation view)."""
        self.status, self.next_attempt_at = "cancelled", None
        if why:
            self.error = why

    def postpone(self, until: datetime) -> None:
        """Leave it queued until then."""
        self.next_attempt_at = until

    def advance(self, status: str, now: datetime, error_code: str | None = None) -> bool:
        """Record what the provider says became of it; False for a status we do not track, a duplicate or one
        out of order (a message never moves back)."""
        if status not in PROGRESS or PROGRESS[status] <= PROGRESS.get(self.status, 3):
            return False
        self.status = status
        if status == "delivered":
            self.delivered_at = now
        elif status in ("undelivered", "failed"):
            self.error = f"{status} {error_code or ''}".strip()
        return True


@dataclass(eq=False, kw_only=True)
class InboundMessage:
    """An SMS a phone sent us, kept once per provider MessageSid."""

    message_sid: str
    from_phone: str
    to_phone: str
    body: str
    received_at: datetime
    keyword: str | None = None
    code: str | None = None
    attention: str | None = None  # why a coordinator should read it (INBOX_REASONS), until one has dealt with it
    dealt_with_at: datetime | None = None
    dealt_with_by: str | None = None
    request_id: uuid.UUID | None = None  # in the inbox: the request it is about (of the last SMS the phone was sent)

    def needs(self, reason: str, about: uuid.UUID | None = None) -> None:
        """Put it in the coordinators' inbox (again, if they had dealt with it), saying why, and about which
        request (if any)."""
        self.attention, self.dealt_with_at, self.dealt_with_by = reason, None, None
        self.request_id = about or self.request_id

    def dealt_with(self, by: str, at: datetime) -> bool:
        """A coordinator has read it and acted; False if it was not waiting."""
        if self.attention is None or self.dealt_with_at is not None:
            return False
        self.dealt_with_at, self.dealt_with_by = at, by
        return True


# Why an SMS waits in the coordinators' inbox, as they read it.
INBOX_REASONS = {
    "not_understood": "Not a reply we understand: read it, and answer them yourself if it needs one.",
    "unknown_sender": "From a number none of your volunteers has: who is it?",
    "several_open": "Said yes or no without a reference while several offers were open; we asked which.",
    "no_such_offer": "Gave a reference that is not theirs or no longer open; we told them so.",
    "nothing_open": "Texted though we have never offered them anything.",
    "debrief": "Asked for someone to call them (TALK): call them, and mark it dealt with once you have.",
    "concern_unplaced": "A volunteer's concern we could not tie to one task of theirs (we asked which): read it, "
                        "and call them.",
    "wellbeing_low": "Gave a low score at their wellbeing check-in: call them, and mark it dealt with once you have.",
}
# A score (1 to 5) is read as a wellbeing check-in's answer this long after we asked (matching takes it as long).
CHECK_IN_ANSWER_WINDOW = timedelta(days=14)
CONCERN_UNPLACED = ("concern_which", "concern_no_task")  # matching's answers to a concern it could not place


@dataclass(frozen=True)
class InboundSms:
    """What the provider's webhook says of an SMS a phone sent us (the sender's number in E.164 where it is one)."""

    message_sid: str
    sender: str
    to: str
    body: str


def answer_to(reply: Reply, language: str | None, was_opted_out: bool, texted_before: bool) -> str | None:
    """What an SMS gets by return: help, or what we did not understand; None when matching answers it, or the
    carrier does (opt-out and opt-in), or the number opted out. Matching answers MY, AWAY, HOURS and JOIN."""
    if reply.keyword in ("STOP", "START", *VIEWS) or (was_opted_out and reply.keyword != "START"):
        return None
    if not texted_before and reply.keyword != "HELP":
        return None  # matching answers a number we never texted: it knows whether it is a volunteer's
    return answer_for(reply, language)


# --- when a message may go ----------------------------------------------------------------------------------------

def quiet_until(hours: str, zone: tzinfo, now: datetime) -> datetime | None:
    """If `now` falls in `hours` ("21:00-08:00" in `zone`; "off" for none), when they end; else None."""
    if hours.strip().lower() in ("", "off", "none"):
        return None
    start, end = (time.fromisoformat(part) for part in hours.strip().split("-"))
    local = now.astimezone(zone)
    at = local.time().replace(tzinfo=None)
    quiet = (start <= at or at < end) if start > end else (start <= at < end)
    if not quiet:
        return None
    day = local.date() + timedelta(days=1) if start > end and at >= start else local.date()
    return datetime.combine(day, end, tzinfo=zone).astimezone(now.tzinfo)


def send_time(now: datetime, place: Community | None, *, urgent: bool = False, not_before: datetime | None = None,
              quiet_hours: str | None = None) -> datetime | None:
    """When a message may go: not before `not_before`, and unless urgent not in the community's quiet hours
    (`quiet_hours` overrides every community's). None means now."""
    at = max(not_before or now, now)
    if not urgent and place is not None:
        at = quiet_until(quiet_hours or place.quiet_hours, place.zone, at) or at
    return at if at > now else None


# --- whether a message still applies ------------------------------------------------------------------------------

# How long a "that offer is closed" text waits, at a time, for the offer it closes while that offer is being sent.
WAIT_FOR_OFFER = timedelta(seconds=30)
NOT_SENT = {  # why a message was cancelled, as the conversation view shows it
    "withdrawn": "not sent: the offer was withdrawn before its text went",
    "accepted": "not sent: the offer was accepted before its text went",
    "never_offered": "not sent: the offer it closes never reached them",
    "opted_out": "not sent: they opted out of SMS",
    "task_ended": "not sent: the task was withdrawn, given back or done",
    "died": "not sent: the person it was about died",
    "answered": "not sent: the survey question was answered",
}


def offer_key(offer_id: uuid.UUID) -> str:
    """The key of an offer's SMS."""
    return f"offer:{offer_id}"


def withdrawn_key(offer_id: uuid.UUID) -> str:
    """The key of the "that offer is closed" text for an offer (also kept, cancelled, when no text is due, so an
    offer whose withdrawal overtook it is never texted)."""
    return f"withdrawn:{offer_id}"


def closed_offer_key(message: OutgoingMessage) -> str | None:
    """The key of the offer SMS a "that offer is closed" text closes; None for any other message."""
    return offer_key(uuid.UUID(message.key.split(":", 1)[1])) if message.purpose == "withdrawn" else None


def closed_text_fate(offer: OutgoingMessage | None) -> str:
    """What becomes of a "that offer is closed" text, by what became of the offer's SMS: "send" once it went
    (sent or delivered); "wait" while it is still to go or being sent (a closed text never arrives before the
    offer it closes); "cancel" when it never went (never queued, cancelled, failed or undelivered): nobody is
    told that an offer they never had is closed."""
    if offer is None:
        return "cancel"
    if offer.status in RECEIVED:
        return "send"
    return "wait" if offer.status in ("queued", "sending") else "cancel"


def before_sending(message: OutgoingMessage, contact: Contact | None,
                   offer: OutgoingMessage | None = None) -> tuple[str, str | None]:
    """What the sender does with a due message, and why: ("send", None); ("wait", None) or ("cancel", why) for a
    closed text whose offer (`offer`, the SMS it closes) is still to go or never went; ("fail", why) for a
    number that opted out or cannot take SMS."""
    if message.purpose == "withdrawn":
        fate = closed_text_fate(offer)
        if fate != "send":
            return fate, NOT_SENT["never_offered"] if fate == "cancel" else None
    refusal = contact.refusal() if contact is not None else None
    return ("fail", refusal) if refusal else ("send", None)


# Reminders of an accepted task with a fixed time: (name, offset, from the window's start or end).
REMINDERS = (("reminder_day_before", timedelta(days=-1), "start"), ("reminder_soon", timedelta(hours=-2), "start"),
             ("prompt_done", timedelta(hours=1), "end"))


def reminder_keys(offer_id: uuid.UUID) -> list[str]:
    """The keys of an accepted task's reminders."""
    return [f"{name}:{offer_id}" for name, _, _ in REMINDERS]


def reminders_due(start: datetime, end: datetime, now: datetime) -> list[tuple[str, datetime]]:
    """The reminders of a task in that window still to come: (name, when)."""
    edges = {"start": start, "end": end}
    return [(name, edges[edge] + offset) for name, offset, edge in REMINDERS if edges[edge] + offset > now]


# --- what each message says -------------------------------------------------------------------------------------

def wording(place: Community | None) -> dict:
    """A community's own wording of our texts, by language then template name."""
    return place.sms_templates if place else {}


def when_text(when: When, place: Community | None, language: str) -> str:
    """An event's window, as the community's clocks show it."""
    start, end = when.window_start, when.window_end
    if place is not None and start and end:
        start, end = start.astimezone(place.zone), end.astimezone(place.zone)
    return window_text(start, end, when.window_days, when.window_part, language)


def offer_body(offer: OfferMade, place: Community | None, language: str) -> str:
    """The offer: the kind of help, district, window and code only."""
    return offer_text(offer.support_type, offer.area, when_text(offer, place, language), offer.code, language,
                      wording(place), rhythm=offer.rhythm)


def visit_overdue_body(overdue: BefriendingVisitOverdue, place: Community | None, language: str) -> str:
    """A gentle reminder that no befriending visit was logged lately: the code and since when; no names."""
    since = f"{overdue.since.day} {MONTHS[language_of(language)][overdue.since.month - 1]}"
    return render("visit_overdue", language, wording(place), code=overdue.code, since=since)


def befriending_thanks_body(ended: BefriendingEnded, place: Community | None, language: str) -> str:
    """Thanks to the volunteer of a befriending match that ended, with how many visits they made."""
    return render("befriending_thanks", language, wording(place), code=ended.code,
                  visits=visits_text(ended.visits, language))


def details_body(shared: TaskDetailsShared, place: Community | None, language: str) -> str:
    """What the volunteer who accepted is told: the person's first name, address and phone where the person
    consented; otherwise that the coordinator will call."""
    texts = wording(place)
    if shared.shared:
        details = render("details", language, texts, first_name=shared.first_name or "", code=shared.code,
                         address=shared.address or "", phone=shared.person_phone or "-")
    else:
        details = render("no_details", language, texts, code=shared.code)
    return render("accepted", language, texts, code=shared.code, details=details)


def reminder_body(name: str, code: str, when: str, place: Community | None, language: str) -> str:
    """A reminder of an accepted task (`name` is one of REMINDERS)."""
    return render(name, language, wording(place), code=code, when=when)


def died_body(first_name: str | None, place: Community | None, language: str) -> str:
    """What a volunteer who helped someone who died is told (the community may word it its own way)."""
    return render("died", language, wording(place), first_name=first_name or "the person you helped")


def withdrawn_body(withdrawn: OfferWithdrawn, place: Community | None, language: str) -> str:
    """That an offer is closed: taken by someone else, or no longer needed."""
    name = "withdrawn_taken" if withdrawn.reason == "taken" else "withdrawn"
    return render(name, language, wording(place), code=withdrawn.code)


def unresolved_body(unresolved: ReplyUnresolved, language: str) -> str:
    """Why an SMS did nothing, and what to send instead."""
    if unresolved.reason == "unknown_sender":
        return render("unknown_sender", language)
    if unresolved.reason == "several_open":
        keyword = KEYWORD_IN.get(language, {}).get(unresolved.keyword, unresolved.keyword)
        return render("which", language, codes=", ".join(unresolved.codes), keyword=keyword,
                      first=unresolved.codes[0])
    if unresolved.reason == "no_such_offer":
        return render("not_open", language, code=unresolved.code)
    return render("nothing_open", language, help=render("help", language))


def day_text(day: date, language: str) -> str:
    """A day as our texts write it: 'Thu 24 Dec', 'jeu 24 déc'."""
    return f"{DAY_NAMES[language][day.weekday()]} {day.day} {MONTHS[language][day.month - 1]}"


def hours_text(hours: float, language: str) -> str:
    """Hours as people write them: '12', '3.5' ('3,5' in French)."""
    text = f"{hours:.2f}".rstrip("0").rstrip(".")
    return text.replace(".", ",") if language == "fr" else text


def answered_body(answered: ReplyAnswered, place: Community | None, language: str, dates: str = "") -> str:
    """What a volunteer who asked about themselves is told: their tasks (code, kind of help, district, window; never
    the person), the days away recorded, that the dates could not be read (quoting `dates`), or their hours; or, to
    a concern, that it reached the coordinator (or which task it is about), with the community's emergency number."""
    texts = wording(place)
    if answered.answer == "tasks":
        if not answered.tasks:
            return render("no_tasks", language, texts)
        lines = [render("my_task", language, texts, code=t.code, kind=kind_label(t.support_type, language),
                        place=render("place", language, texts, area=t.area) if t.area else "",
                        when=when_text(t, place, language)) for t in answered.tasks]
        return render("my_tasks", language, texts, tasks="; ".join(lines))
    if answered.answer == "away":
        return render("away", language, texts, first=day_text(answered.away_from, language),
                      last=day_text(answered.away_until, language))
    if answered.answer == "away_unclear":
        return render("away_unclear", language, texts, dates=dates)
    if answered.answer.startswith("concern_"):
        codes = [t.code for t in answered.tasks]
        emergency = place.emergency if place else "999"
        return render(answered.answer, language, texts, code=codes[0] if codes else "", codes=", ".join(codes),
                      first=codes[0] if codes else "", emergency=emergency)
    if answered.answer == "join":
        return render("join", language, texts, community=place.name if place else "us", link=answered.link or "")
    if answered.answer.startswith("wellbeing_"):
        return render(answered.answer, language, texts)
    done = answered.year_tasks or 0
    return render("hours", language, texts, hours=hours_text(answered.year_hours or 0, language), year=answered.year,
                  done=f"{done} {TASKS_DONE[language][done != 1]}")


def applied_body(place: Community | None, language: str) -> str:
    """Someone applied to volunteer: thanked, told a coordinator will be in touch."""
    return render("applied", language, wording(place), community=place.name if place else "us")


def _session_when(starts_at: datetime, place: Community | None, language: str) -> str:
    """A session's day and time as its community's clocks show it: 'Mon 14 Dec 10:00'."""
    local = starts_at.astimezone(place.zone) if place is not None else starts_at
    return f"{DAY_NAMES[language_of(language)][local.weekday()]} {local.day:02d} " \
           f"{MONTHS[language_of(language)][local.month - 1]} {local:%H:%M}"


def invitation_body(invited: TrainingInvited, place: Community | None, language: str) -> str:
    """An invitation to a training session: its topic, day, place and code; never anything about the person."""
    return render("training_invited", language, wording(place), topic=invited.topic, code=invited.code,
                  when=_session_when(invited.starts_at, place, language), where=invited.where)


def training_answer_body(answered: TrainingAnswered, place: Community | None, language: str) -> str:
    """The answer to a YES or NO about a session: booked, full (on the waiting list), or noted."""
    return render(f"training_{answered.answer}", language, wording(place), topic=answered.topic, code=answered.code,
                  when=_session_when(answered.starts_at, place, language), where=answered.where)


def expiring_body(expiring: CheckExpiring, language: str) -> str:
    """That a check or training runs out soon, by the name its community gives it."""
    name = expiring.check_name or CHECKS.get(expiring.check, expiring.check.replace("_", " "))
    return render("expiring", language, check=name.lower(), date=f"{expiring.expires_on:%d %b %Y}")


# --- conversations, as a phone shows them -------------------------------------------------------------------------

RECEIVED = ("sent", "delivered")  # what a phone has in its inbox


@dataclass(frozen=True)
class Scope:
    """Whose messages and conversations a coordinator reads: the messages their communities sent (`communities`),
    and those phones sent to the numbers their communities text from (`ours`) or to a number that is no
    community's (not one of `every`, so nobody else could see them)."""

    communities: tuple[str, ...]
    ours: list[str]
    every: list[str]

    @classmethod
    def of(cls, communities: Iterable[str], known: dict[str, Community]) -> "Scope":
        """The scope of a user of these communities, among the communities known."""
        communities = tuple(communities)
        return cls(communities=communities, ours=[known[slug].sms_from for slug in communities],
                   every=[c.sms_from for c in known.values()])

    def sees_sent(self, message: OutgoingMessage) -> bool:
        """True when a message we sent is one of the scope's communities'."""
        return message.community in self.communities

    def sees_received(self, message: InboundMessage) -> bool:
        """True when a message a phone sent reached one of the scope's numbers, or a number that is no
        community's."""
        return message.to_phone in self.ours or message.to_phone not in self.every


def community_of_number(number: str | None, known: dict[str, Community]) -> str | None:
    """The community that texts from this number, if any."""
    return next((slug for slug, place in known.items() if number and place.sms_from == number), None)


@dataclass
class Entry:
    """One message in a thread: sent to the phone ("out") or received from it ("in")."""

    direction: str
    at: datetime
    message: OutgoingMessage | InboundMessage


def shown_at(message: OutgoingMessage) -> datetime:
    """When a message went, or is to go if it waits (quiet hours, a reminder's time), or else was written."""
    waits = message.next_attempt_at if message.status == "queued" else None
    return message.sent_at or waits or message.created_at


def thread(outgoing: Iterable[OutgoingMessage], inbound: Iterable[InboundMessage]) -> list[Entry]:
    """Messages both ways in the order the phone sees them; those still waiting last; an answer sent straight back
    (at the moment its text arrived) after that text."""
    both = [Entry("out", shown_at(m), m) for m in outgoing]
    both += [Entry("in", m.received_at, m) for m in inbound]
    return sorted(both, key=lambda e: (e.at, e.direction == "out"))


def last_entry(outgoing: OutgoingMessage | None, inbound: InboundMessage | None) -> Entry:
    """The newer of a phone's last message each way (an answer sent straight back is newer than what it answers)."""
    happened = [Entry("out", outgoing.sent_at or outgoing.created_at, outgoing)] if outgoing else []
    happened += [Entry("in", inbound.received_at, inbound)] if inbound else []
    return max(happened, key=lambda e: (e.at, e.direction == "out"))


def is_unknown(outgoing: Iterable[OutgoingMessage], inbound: Iterable[InboundMessage]) -> bool:
    """A number that texted us but that we only ever answered: someone to follow up."""
    return bool(list(inbound)) and not any(m.purpose != "answer" for m in outgoing)


# --- surveys by SMS: the question a phone was last asked ----------------------------------------------------------

@dataclass(eq=False)
class SurveyAsk:
    """A survey question sent (or held for the quiet hours) to a phone, until it is answered or the survey ends: a
    reply from that phone that is no volunteer's command is read as its answer (services/intake/surveys.py)."""

    phone: str
    survey_id: uuid.UUID
    question_id: str
    number: int
    of: int
    asked_at: datetime
    language: str = "en"
    answered_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def reminder_key(self) -> str:
        """The key of the survey's one reminder (one per survey, whichever question it repeats)."""
        return f"survey-reminder:{self.survey_id}"
