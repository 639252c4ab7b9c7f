"""Intake's domain: a request for support with its consents and timeline, the rules that move its status on, what
matching and a volunteer may be told of it, the audit log, idempotency keys and the people who sign in.

Pure: no Flask, no database session, no environment. adapters.py maps these classes onto intake's tables.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Iterable, Protocol

import phonenumbers

from services.intake import fhir
from shared import equity
from shared.auth import SYSTEM, Actor, subject_digest
from shared.clock import utcnow
from shared.contracts import EventPayload
from shared.contracts.intake import (OrganisationChanged, PersonMonitored, RequestSubmitted, TaskDetailsShared,
                                    TokenRevoked)
from shared.contracts.matching import (BefriendingEnded, BefriendingVisitLogged, BefriendingVisitOverdue, OfferAccepted,
                                      OfferWithdrawn, RequestUnmatched, TaskCompleted)
from shared.taxonomy import BEFRIENDING_END_REASONS, KINDS, OPEN_REQUEST_STATUSES, ORGANISATION_TYPES, REQUEST_STATUSES

CONSENTS = ("share_contact", "sms_contact")
# A person's answers to equity monitoring (shared/equity.py), asked only with their consent to it.
MONITORING_ANSWERS = ("age_band", "sex", "ethnicity", "first_language", "disability")
FINAL_STATUSES = ("completed", "cancelled", "signposted")
# What matching's events add to a request's timeline: (what, detail), the detail filled from the event's fields.
TIMELINE = {
    "offer.made": ("offered", "Offered to a volunteer (ref {code})"),
    "offer.accepted": ("accepted", "A volunteer accepted (ref {code})"),
    "request.matched": ("matched", "Matched with a volunteer"),
    "request.unmatched": ("unmatched", "{reason}"),
    "task.completed": ("completed", "The volunteer reported it done"),
    "task.given_back": ("given back", "The volunteer can no longer do it; asking others first"),
    "offer.withdrawn": ("withdrawn", "Offer withdrawn (ref {code})"),  # and why: WITHDRAWN_WHY
    "task.volunteer_opted_out": ("volunteer opted out", "The volunteer with the task (ref {code}) opted out of SMS: "
                                                        "no reminder reaches them by text; call them to check it "
                                                        "still stands"),
    "befriending.started": ("befriending", "Befriending started, {rhythm}: review on {review_on}"),
    "befriending.visit_overdue": ("visit overdue", "No visit logged since {since}: the volunteer (ref {code}) was "
                                                   "reminded once"),
    "befriending.visit_logged": ("visit", "Visit {visit} logged for {visited_on}"),
    "befriending.ended": ("completed", "Befriending ended: {why} ({visits} visits over {weeks} weeks)"),
}
# Why an offer was withdrawn, as the timeline says it (a withdrawal alone never moves the status).
WITHDRAWN_WHY = {
    "taken": "another volunteer took it",
    "cancelled": "the request was cancelled",
    "opted_out": "the volunteer opted out of SMS",
    "died": "the person died",
}
# The status a request has while an event is the latest one matching published about it (the highest sequence):
# the state matching is then in, as intake names it. An event not listed (a withdrawal) says nothing of the status.
IMPLIED_STATUS = {
    "offer.made": "offered",
    "offer.accepted": "matched",
    "request.matched": "matched",
    "request.unmatched": "unmatched",
    "task.given_back": "offered",  # matching asks others at once: an offer.made or request.unmatched follows
    "task.completed": "completed",  # of the last occurrence; of an earlier one "offered": the next is being asked
    "befriending.ended": "completed",  # a befriending match ends the request, whatever the reason
}
# How an event not numbered (published before events had a sequence) moves a request: only on, from these statuses.
MOVES = {
    "offer.made": ({"submitted", "unmatched"}, "offered"),
    "request.matched": ({"submitted", "offered", "unmatched"}, "matched"),
    "request.unmatched": ({"submitted", "offered"}, "unmatched"),
    "task.completed": ({"matched"}, "completed"),
    "task.given_back": ({"matched"}, "offered"),
}
# A referral as its referrer follows it: the request's status in the referrer's words, and which timeline entries
# move that story on. Nothing of the volunteers (who was asked, their references, why nobody was eligible): that is
# the roster, which an outside organisation never sees.
REFERRAL_STAGES = {
    "submitted": ("Received", "The coordinators have it and will look for a volunteer."),
    "offered": ("Looking for a volunteer", "Volunteers nearby have been asked."),
    "unmatched": ("No volunteer found yet", "Nobody could take it yet; a coordinator is looking at other ways to "
                                            "help and will be in touch."),
    "matched": ("Volunteer found", "A volunteer has agreed to help."),
    "completed": ("Help given", "The volunteer has given the help."),
    "cancelled": ("Closed", ""),  # the reason the coordinator gave follows
    "signposted": ("Could not be met by a volunteer", ""),  # "Signposted to ..." follows
}
REFERRAL_HISTORY = {"submitted": "submitted", "offered": "offered", "given back": "offered", "unmatched": "unmatched",
                    "matched": "matched", "completed": "completed", "cancelled": "cancelled", "died": "cancelled",
                    "signposted": "signposted"}
# What a coordinator checks on a referral (`SupportRequest.to_check`: a field, why, and what was sent), by the
# attributes whose change settles it. Until the place and the kind of help are settled, matching is not asked.
CHECKED_BY = {"person": ("person_phone", "postcode", "latitude", "address"), "person.phone": ("person_phone",),
              "person.postcode": ("postcode", "latitude", "longitude"), "person.latitude": ("postcode", "latitude"),
              "person.longitude": ("postcode", "longitude"), "person.name": ("person_name",),
              "person.date_of_birth": ("date_of_birth",), "person.preferred_language": ("preferred_language",),
              "support_type": ("support_type",), "consent": ("consent",),
              "when": ("window_start", "window_end", "window_days", "window_part", "repeat_every_weeks"),
              "bereavement.consent": ("consent",),
              "person.died": ("person_name", "person_phone", "date_of_birth")}
HOLDING = ("person.postcode", "person.latitude", "person.longitude", "bereavement.consent", "person.died")
# The request's attributes matching knows of: a change to one of them is a `request.updated`.
MATCHING_FIELDS = ("support_type", "urgency", "latitude", "longitude", "area", "window_start", "window_end",
                   "window_days", "window_part", "repeat_every_weeks", "repeat_occurrences", "preferences")
# A request's attributes in a coordinator's words, for the timeline's "edited" entries (the audit keeps the names).
# The area and the place on the map follow from the postcode.
FIELD_WORDS = {
    "person_name": "name", "person_phone": "phone number", "address": "address", "postcode": "postcode",
    "area": "postcode", "latitude": "postcode", "longitude": "postcode", "preferred_language": "language",
    "date_of_birth": "date of birth", "is_carer": "whether they are a carer", "support_type": "kind of help",
    "urgency": "urgency", "window_start": "when", "window_end": "when", "window_days": "when", "window_part": "when",
    "repeat_every_weeks": "how often", "repeat_occurrences": "how often", "preferences": "preferences",
    "coordinator_notes": "notes for coordinators", "referrer_organisation": "referrer", "referrer_name": "referrer",
    "referrer_contact": "referrer", "source": "referrer", "referral_reason": "reason for the referral",
    "external_id": "reference", "consent": "consent",
}
# The board's order: those needing a coordinator first (`needs_you`), then unmatched, then by urgency (urgent, soon,
# the rest), then newest.
URGENCY_RANK = {"urgent": 0, "soon": 1}
# Offers whose answers fall due this soon are "about to time out" on the board.
ANSWERS_DUE_SOON = timedelta(minutes=10)
NOT_MATCHED = ("submitted", "offered", "unmatched")


# --- errors -----------------------------------------------------------------------------------------------------------


class IntakeError(Exception):
    """Something a use case refuses to do; the message says why, for the person who asked."""


class NotFound(IntakeError):
    """No such request within the actor's reach."""


class NotOpen(IntakeError):
    """The request is completed or cancelled, so it cannot be changed or cancelled."""

    def __init__(self, status: str, verb: str):
        super().__init__(f"A {status} request cannot be {verb}.")
        self.status = status


class NotSignpostable(IntakeError):
    """A request a volunteer has is not signposted elsewhere."""


class UserExists(IntakeError):
    """A user with this email address exists already."""


class WeakPassword(IntakeError):
    """A password that would be too easy to guess; the message says why."""


class TooManySignIns(IntakeError):
    """Sign-in is refused for a while: this account, or this address, failed too often lately."""

    def __init__(self, retry_after: int):
        minutes = math.ceil(retry_after / 60)
        super().__init__(f"Too many failed sign-ins for this account or from this address. Try again in {minutes} "
                         f"minute{'s' if minutes != 1 else ''}.")
        self.retry_after = retry_after


class NotMergeable(IntakeError):
    """Two person records that cannot be merged: the same one, or one already merged into another."""

    field = "other"  # what the API and the page name as wrong


class AlreadyDied(IntakeError):
    """A person whose death is recorded already."""


class NotLinkable(IntakeError):
    """A carer link that cannot be made: a record not of the person's community, or the person themselves."""

    def __init__(self, message: str, field: str = "carer"):
        super().__init__(message)
        self.field = field  # what the API and the page name as wrong


class NotAnAnswer(IntakeError):
    """An equity monitoring answer that is not one of the person's country's categories."""

    field = "ethnicity"


class NotOffered(IntakeError):
    """A request volunteers have been asked about cannot become one that is never offered (kind "other")."""


class ConcernClosed(IntakeError):
    """A concern that was closed takes no more actions."""


class InvalidRevocation(IntakeError):
    """A revocation that names no token: neither a token id nor a holder, or an id that cannot be one."""


# --- a request for support --------------------------------------------------------------------------------------------


class Consent:
    """A consent the person gave or refused, with who recorded it and when. Never edited: a change is a new one."""

    def __init__(self, kind: str, given: bool, recorded_by: str, recorded_at: datetime | None = None):
        self.kind = kind
        self.given = given
        self.recorded_by = recorded_by
        self.recorded_at = recorded_at or utcnow()


class TimelineEntry:
    """Something that happened to a request: submitted, offered, accepted, matched, completed, cancelled ..."""

    def __init__(self, what: str, detail: str = "", actor: str = "", at: datetime | None = None):
        self.what = what
        self.detail = detail
        self.actor = actor
        self.at = at or utcnow()


class SupportRequest:
    """A request for practical or bereavement support, for one person."""

    consents: list[Consent]
    timeline: list[TimelineEntry]

    def __init__(self, *, community: str, created_by: str, person_name: str, latitude: float, longitude: float,
                 support_type: str, source: str = "coordinator", person_phone: str | None = None, address: str = "",
                 postcode: str | None = None, area: str = "", preferred_language: str = "en",
                 date_of_birth: date | None = None, is_carer: bool = False, urgency: str = "routine",
                 window_start: datetime | None = None, window_end: datetime | None = None,
                 window_days: list[str] | None = None, window_part: str | None = None,
                 repeat_every_weeks: int | None = None, repeat_occurrences: int = 1,
                 preferences: dict[str, Any] | None = None, coordinator_notes: str = "",
                 referrer_organisation: str | None = None, referrer_name: str | None = None,
                 referrer_contact: str | None = None, referral_reason: str = "", external_id: str | None = None,
                 source_document: dict[str, Any] | None = None, to_check: list[dict[str, Any]] | None = None,
                 id: uuid.UUID | None = None):
        now = utcnow()
        self.id = id or uuid.uuid4()
        self.person_id: uuid.UUID | None = None  # the person's record (Person), set as the request is stored
        self.maybe_person_id: uuid.UUID | None = None  # another record that may be theirs, for a coordinator to say
        self.cares_for_id: uuid.UUID | None = None  # for a carer: the record of the person they care for
        self.community, self.source, self.status, self.outcome = community, source, "submitted", ""
        self.person_name, self.person_phone, self.address, self.postcode = person_name, person_phone, address, postcode
        self.area, self.latitude, self.longitude = area, latitude, longitude
        self.preferred_language, self.date_of_birth, self.is_carer = preferred_language, date_of_birth, is_carer
        self.support_type, self.urgency = support_type, urgency
        self.window_start, self.window_end, self.window_days, self.window_part = (window_start, window_end,
                                                                                  window_days, window_part)
        self.repeat_every_weeks, self.repeat_occurrences = repeat_every_weeks, repeat_occurrences
        self.preferences = preferences if preferences is not None else {}
        self.coordinator_notes = coordinator_notes
        self.referrer_organisation, self.referrer_name, self.referrer_contact = (referrer_organisation, referrer_name,
                                                                                 referrer_contact)
        self.referral_reason, self.external_id, self.source_document = referral_reason, external_id, source_document
        self.to_check = list(to_check or [])  # what a coordinator should check: {"field", "why", "value"}
        self.created_by, self.created_at, self.updated_at = created_by, now, now
        self.signposted_to: uuid.UUID | None = None  # the directory entry the person was pointed to
        self.matching_sequence = 0  # of matching's latest event that set the status (`standing_after`)
        self.given_back_at: datetime | None = None  # its volunteer gave it back, and nobody has taken it since
        self.answers_due_at: datetime | None = None  # when the latest offers sent time out (matching says)
        self.sms_waiting, self.sms_waiting_as_of = 0, None  # SMS about it in notify's inbox, as of when notify said
        self.concerns_open = 0  # volunteers' concerns about the person still open in the safeguarding log
        self.visit_overdue_since: date | None = None  # befriending: no visit logged since that day, and it is overdue
        self.last_visit_on: date | None = None  # befriending: the latest visit matching told of
        self.pseudonymised_at: datetime | None = None  # when its person's details were removed (retention, erasure)
        self.consents = []
        self.timeline = []

    @classmethod
    def submit(cls, actor: Actor, columns: dict[str, Any], consent: dict[str, bool],
               document: dict[str, Any] | None = None) -> "SupportRequest":
        """A new request in the actor's community, with its consents and the first line of its timeline. A
        referral from an account that names its organisation is that organisation's, whatever the body says (its
        colleagues follow it; no one can file a referral under another organisation's name)."""
        if columns.get("referrer_organisation") and actor.organisation:
            columns = {**columns, "referrer_organisation": actor.organisation}
        request = cls(community=actor.community, created_by=actor.subject, source_document=document, **columns)
        request.record_consents(consent, actor.subject)
        via = f" (referred by {request.referrer_organisation})" if request.referrer_organisation else ""
        request.note("submitted", f"{KINDS[request.support_type].label}, {request.urgency}{via}", actor.subject)
        for check in request.to_check:
            request.note("to check", check["why"], actor.subject)
        if request.held:
            request.note("waiting", "Not offered to volunteers until a coordinator has checked it", actor.subject)
        return request

    @property
    def held(self) -> bool:
        """True while matching is not to be asked: the kind of help is one a coordinator triages (other), or the
        person's place is still to be checked."""
        return not KINDS[self.support_type].offered or any(c["field"] in HOLDING for c in self.to_check)

    @property
    def is_open(self) -> bool:
        """True while the request may still be changed or cancelled."""
        return self.status in OPEN_REQUEST_STATUSES

    def advance(self, status: str) -> bool:
        """Move to `status` if that is further along than where the request is now; True if it moved."""
        if self.status in FINAL_STATUSES:
            return False
        if status in FINAL_STATUSES or REQUEST_STATUSES.index(status) > REQUEST_STATUSES.index(self.status):
            self.status = status
            self.closing()
            return True
        return False

    def closing(self) -> None:
        """What a request keeps once it is closed: not the document it came in (a FHIR ServiceRequest or Bundle,
        with the whole patient in it), which is kept only while the request is open."""
        if self.status in FINAL_STATUSES:
            self.source_document = None

    def consent(self, kind: str) -> bool:
        """The latest recorded answer for a kind of consent (no record means no)."""
        answers = [c.given for c in self.consents if c.kind == kind]
        return answers[-1] if answers else False

    def record_consents(self, answers: dict[str, bool], recorded_by: str) -> bool:
        """Record each consent answer given that differs from the last one (all of them the first time); True if
        any was recorded."""
        first, recorded = not self.consents, False
        for kind in CONSENTS:
            if kind in answers and (first or self.consent(kind) != answers[kind]):
                self.consents.append(Consent(kind=kind, given=answers[kind], recorded_by=recorded_by))
                recorded = True
        return recorded

    def note(self, what: str, detail: str = "", actor: str = "", at: datetime | None = None) -> None:
        """Add an entry to the request's timeline, in the order things happened (after those at the same time)."""
        entry = TimelineEntry(what=what, detail=detail, actor=actor, at=at)
        later = next((n for n, e in enumerate(self.timeline) if e.at > entry.at), len(self.timeline))
        self.timeline.insert(later, entry)

    def texts_held_until(self, until: datetime, zone: tzinfo, at: datetime) -> None:
        """Note that the offers' texts wait for the community's quiet hours to end (once for the offers of a batch,
        which all wait until the same time), saying when they go in the community's time."""
        detail = f"Texts wait for the quiet hours to end: they go at {until.astimezone(zone):%H:%M on %a %d %b}"
        if not any(e.what == "held" and e.detail == detail for e in self.timeline):
            self.note("held", detail, "notify", at=at)

    def edit(self, columns: dict[str, Any], consent: dict[str, bool] | None, by: str) -> list[str]:
        """Change what is different, record new consent answers, and note it; the names of what changed. What a
        coordinator was to check and has now changed is checked (NotOffered: a request matching has cannot become
        one never offered)."""
        if not self.is_open:
            raise NotOpen(self.status, "changed")
        if self.pseudonymised_at is not None:  # nothing of the person is left to change, and they asked for that
            raise NotOpen("erased", "changed")
        if "preferences" in columns and self.befriending:  # a befriending request stays one (set when logged)
            columns = {**columns, "preferences": {**(columns["preferences"] or {}), "befriending": self.befriending}}
        changed = sorted(name for name, value in columns.items() if getattr(self, name) != value)
        if "support_type" in changed and not KINDS[columns["support_type"]].offered and not self.held:
            raise NotOffered("Volunteers may have been asked about this request, so it cannot become "
                             f"\"{KINDS[columns['support_type']].label}\": cancel it instead.")
        for name in changed:
            setattr(self, name, columns[name])
        if consent is not None and self.record_consents(consent, by):
            changed.append("consent")
        if changed:
            self.note("edited", in_words(changed), by)
        settled = [c for c in self.to_check if any(name in changed for name in CHECKED_BY.get(c["field"], ()))]
        if settled:
            self.to_check = [c for c in self.to_check if c not in settled]
            self.note("checked", ", ".join(sorted({c["field"] for c in settled})), by)
        return changed

    def cancel(self, reason: str, by: str) -> None:
        """Cancel an open request, with the reason as its outcome; NotOpen if it was completed or cancelled."""
        if not self.advance("cancelled"):
            raise NotOpen(self.status, "cancelled")
        self.outcome = reason
        self.note("cancelled", reason, by)

    def close_for_death(self, reason: str, by: str) -> None:
        """Close an open request because the person died (NotOpen if it had ended): cancelled, with the reason as
        its outcome and a "died" line on its timeline."""
        if not self.advance("cancelled"):
            raise NotOpen(self.status, "closed")
        self.outcome = reason
        self.note("died", reason, by)

    @property
    def ended_by_death(self) -> bool:
        """True for a request closed because the person died."""
        return self.status == "cancelled" and any(e.what == "died" for e in self.timeline)

    def signpost(self, entry_id: uuid.UUID, entry_name: str, by: str) -> None:
        """Close an open request by pointing the person to a service in the directory (no volunteer could, or
        should, take it); NotOpen if it had ended, NotSignpostable while a volunteer has it."""
        if self.status == "matched":
            raise NotSignpostable("A volunteer has this request: cancel it first if they are not to help.")
        if not self.advance("signposted"):
            raise NotOpen(self.status, "signposted")
        self.signposted_to = entry_id
        self.outcome = f"Signposted to {entry_name}"
        self.note("signposted", self.outcome, by)

    def follow(self, event_type: str, facts: EventPayload, at: datetime) -> None:
        """Note what matching did on the timeline, in the order it happened, and set the status matching's latest
        event implies (`standing_after`): an event older than one already followed changes only the timeline."""
        what, detail = TIMELINE[event_type]
        if isinstance(facts, TaskCompleted):
            detail = completion(facts)[0]
        if isinstance(facts, OfferWithdrawn):
            detail += f": {WITHDRAWN_WHY[facts.reason]}"
        if isinstance(facts, OfferAccepted) and facts.by == "coordinator":
            what, detail = "assigned", "A coordinator assigned a volunteer (ref {code})"
        words = {"why": BEFRIENDING_END_REASONS[facts.reason].lower()} if isinstance(facts, BefriendingEnded) else {}
        self.note(what, detail.format(**facts.as_dict(), **words), "matching", at=at)
        standing = standing_after(Standing(self.status, self.outcome, self.matching_sequence), event_type, facts)
        self.status, self.outcome, self.matching_sequence = standing.status, standing.outcome, standing.sequence
        self.closing()
        self.visits(facts)
        if event_type == "task.given_back" and self.status in NOT_MATCHED:
            self.given_back_at = at
        elif self.status not in NOT_MATCHED:
            self.given_back_at = None

    def visits(self, facts: EventPayload) -> None:
        """Follow a befriending match's visits: overdue since a day until a visit after that day is logged. Matching's
        events may come out of order: an overdue spell older than the latest visit heard of is over already."""
        if isinstance(facts, BefriendingVisitOverdue):
            if self.last_visit_on is None or facts.since >= self.last_visit_on:
                self.visit_overdue_since = facts.since
        elif isinstance(facts, BefriendingVisitLogged):
            self.last_visit_on = max(filter(None, (self.last_visit_on, facts.visited_on)))
            if self.visit_overdue_since is not None and facts.visited_on > self.visit_overdue_since:
                self.visit_overdue_since = None
        elif isinstance(facts, BefriendingEnded):
            self.visit_overdue_since = None

    def answers_due(self, due_at: datetime) -> None:
        """Matching says an offer's SMS went and until when it may be answered: the latest such time counts."""
        if self.answers_due_at is None or due_at > self.answers_due_at:
            self.answers_due_at = due_at

    def messages_waiting(self, waiting: int, as_of: datetime) -> None:
        """Notify says how many SMS about the request wait in its inbox (an older count than the one kept is
        ignored: the counts can arrive out of order)."""
        if self.sms_waiting_as_of is None or as_of >= self.sms_waiting_as_of:
            self.sms_waiting, self.sms_waiting_as_of = waiting, as_of

    def needs_you(self, now: datetime) -> list[tuple[str, Any]]:
        """Why a coordinator should look at the request now, most pressing first, as (reason, detail): a volunteer
        raised a concern (how many are open), nobody found (the reason why), a befriending visit overdue (no visit
        since that day), given back by its volunteer, offers about to time out (when), SMS about it waiting in the
        inbox (how many), urgent with no volunteer yet. Empty when it can wait. `adapters.needs_you` is its SQL
        twin."""
        reasons: list[tuple[str, Any]] = []
        if self.concerns_open > 0:
            reasons.append(("concern", self.concerns_open))
        if self.status == "unmatched":
            reasons.append(("unmatched", self.outcome))
        if self.status == "matched" and self.visit_overdue_since is not None:
            reasons.append(("visit_overdue", self.visit_overdue_since))
        if self.given_back_at is not None and self.status in ("offered", "unmatched"):
            reasons.append(("given_back", self.given_back_at))
        if self.status == "offered" and self.answers_due_at and now < self.answers_due_at <= now + ANSWERS_DUE_SOON:
            reasons.append(("answers_due", self.answers_due_at))
        if self.sms_waiting > 0:
            reasons.append(("sms_waiting", self.sms_waiting))
        if self.urgency == "urgent" and self.status in ("submitted", "offered"):
            reasons.append(("urgent", None))
        return reasons

    def referral_stage(self) -> tuple[str, str]:
        """Where the referral has got to, as its referrer reads it: (stage, what it means)."""
        stage, meaning = REFERRAL_STAGES[self.status]
        return (stage, self.outcome) if self.status in ("cancelled", "signposted") else (stage, meaning)

    def referral_notice(self) -> dict[str, Any]:
        """What the referrer's organisation's webhook is told when the referral is made or moves on: where it has
        got to in the referrer's words (nothing of the volunteers), and the same as a FHIR R4 Task."""
        stage, meaning = self.referral_stage()
        return {"type": "referral.changed", "at": utcnow().isoformat(),
                "referral": {"id": str(self.id), "status": self.status, "stage": stage, "detail": meaning,
                             "external_id": self.external_id},
                "task": fhir.task(self)}

    def referral_history(self) -> list[tuple[str, datetime]]:
        """The referral's story for its referrer: each change of stage and when (a repeat of the same stage, and
        everything about volunteers and texts, left out)."""
        history: list[tuple[str, datetime]] = []
        for entry in self.timeline:
            status = REFERRAL_HISTORY.get(entry.what)
            stage = REFERRAL_STAGES[status][0] if status else None
            if stage and (not history or history[-1][0] != stage):
                history.append((stage, entry.at))
        return history

    @property
    def befriending(self) -> dict[str, str] | None:
        """A befriending request's rhythm and review date ({"rhythm", "review_on"}: an ISO date), kept with its
        preferences; None for any other request."""
        return (self.preferences or {}).get("befriending")

    def for_matching(self, event: type[RequestSubmitted], secret_key: str, **extra: Any) -> RequestSubmitted:
        """What matching may know of the request (`RequestSubmitted` or `RequestUpdated`): no name, phone,
        address, notes or reason; the person only as a pseudonym. (`extra`: `closed=True` for one that ended
        before volunteers were asked.)"""
        preferences = self.preferences or {}
        return event(**extra,
            request_id=self.id, community=self.community, source=self.source, support_type=self.support_type,
            urgency=self.urgency, latitude=self.latitude, longitude=self.longitude, area=self.area,
            window_start=self.window_start, window_end=self.window_end, window_days=self.window_days,
            window_part=self.window_part, repeat_every_weeks=self.repeat_every_weeks,
            repeat_occurrences=self.repeat_occurrences, volunteer_language=preferences.get("volunteer_language"),
            volunteer_gender=preferences.get("volunteer_gender"),
            person_ref=person_ref(self.person_id, secret_key),
            is_carer=self.is_carer, referrer_organisation=self.referrer_organisation,
            befriending_rhythm=(self.befriending or {}).get("rhythm"),
            review_on=date.fromisoformat(self.befriending["review_on"]) if self.befriending else None,
            follows_a_death=self.follows_a_death)

    @property
    def follows_a_death(self) -> bool:
        """True for the bereavement support offered to a carer when the person they cared for died."""
        return any(e.what == AFTER_A_DEATH for e in self.timeline)

    def forget_person(self, at: datetime) -> list[str]:
        """Remove the person's details (retention's pseudonymisation, and erasure): name, phone, address, postcode
        (the district stays), date of birth, notes, the referral's reason, the document it came in, what was to be
        checked, and every text on it that quotes them. What it was, where (the district), when and how it went
        stay, for the counts. The values removed, to remove wherever else they were copied (`scrubbed`)."""
        values = personal_values(self)
        self.person_name, self.person_phone, self.address, self.postcode = REMOVED_NAME, None, "", None
        self.date_of_birth, self.coordinator_notes, self.referral_reason = None, "", ""
        self.source_document = None
        self.to_check = [{"field": c.get("field"), "why": scrubbed(c.get("why", ""), values)} for c in self.to_check]
        self.outcome = scrubbed(self.outcome, values)
        for entry in self.timeline:
            entry.detail = REMOVED if entry.what in WRITTEN_BY_PEOPLE and entry.detail else scrubbed(entry.detail,
                                                                                                   values)
        self.pseudonymised_at = at
        return values

    def as_held(self) -> dict[str, Any]:
        """Everything kept of the request, with its consents and timeline (a subject access export)."""
        held = {name: value for name, value in vars(self).items()
                if not name.startswith("_") and name not in ("consents", "timeline")}
        held["consents"] = [{"kind": c.kind, "given": c.given, "recorded_by": c.recorded_by,
                             "recorded_at": c.recorded_at} for c in self.consents]
        held["timeline"] = [{"at": e.at, "what": e.what, "detail": e.detail, "actor": e.actor} for e in self.timeline]
        return held

    def details_for(self, accepted: OfferAccepted) -> TaskDetailsShared:
        """What the volunteer who accepted, and only they, may be told: the person's first name, address and phone
        where the person consented to sharing them; otherwise nothing, and the coordinator calls."""
        shared = self.consent("share_contact") and self.pseudonymised_at is None  # nothing left to share
        return TaskDetailsShared(
            offer_id=accepted.offer_id, request_id=self.id, phone=accepted.phone, code=accepted.code,
            language=accepted.language, community=self.community, shared=shared,
            first_name=self.person_name.split()[0] if shared and self.person_name.strip() else None,
            address=", ".join(part for part in (self.address, self.postcode) if part) if shared else None,
            person_phone=self.person_phone if shared else None)


@dataclass(frozen=True)
class Standing:
    """A request's status and outcome, and the sequence of matching's event that set them (0: none yet)."""

    status: str
    outcome: str = ""
    sequence: int = 0


def implied(event_type: str, facts: EventPayload) -> tuple[str, str] | None:
    """The status and outcome a request has while this event is the latest matching published about it; None for
    an event that says nothing of the status."""
    status = IMPLIED_STATUS.get(event_type)
    if isinstance(facts, TaskCompleted) and not completion(facts)[1]:
        status = "offered"  # an earlier occurrence done: matching is asking for the next one
    if status is None:
        return None
    return status, facts.reason if isinstance(facts, RequestUnmatched) else "Completed" if status == "completed" else ""


def standing_after(standing: Standing, event_type: str, facts: EventPayload) -> Standing:
    """Where a request stands once it has also heard of this event of matching's.

    The rule: after any set of matching's events, the status is the one the highest-sequence event implies
    (`implied`), whatever order they arrived in; an event with a lower sequence than the one that set the status
    changes nothing. A cancelled or completed request stays so (a cancellation is intake's own, so matching's
    events published before it heard of it are older news). An event published before events were numbered
    (sequence 0) moves the request only on, as MOVES allows, and only while nothing numbered has been followed."""
    moved = implied(event_type, facts)
    if moved is None or standing.status in FINAL_STATUSES:
        return standing
    if facts.sequence == 0 == standing.sequence:  # not numbered, and nothing numbered followed yet: as before
        sources, status = MOVES.get(event_type, ((), None))
        return Standing(*moved) if standing.status in sources and moved[0] == status else standing
    if facts.sequence <= standing.sequence:
        return standing
    return Standing(*moved, sequence=facts.sequence)


def completion(done: TaskCompleted) -> tuple[str, bool]:
    """The timeline's words for a task reported done, and whether it was the request's last occurrence."""
    detail, last = TIMELINE["task.completed"][1], done.occurrence >= done.occurrences
    if not last:
        detail = f"Occurrence {done.occurrence} of {done.occurrences} done"
    if done.hours:
        detail += f" ({done.hours:g} hours)"
    return detail, last


# --- retention and erasure ---------------------------------------------------------------------------------------

REMOVED = "[removed]"
REMOVED_NAME = "(details removed)"
# Timeline entries whose words a person wrote (a coordinator's reason for cancelling, what a referral's sender gave
# that was to be checked): they may say anything about the person, so they go whole.
WRITTEN_BY_PEOPLE = ("cancelled", "to check")


def personal_values(request: "SupportRequest") -> list[str]:
    """What identifies the person in any text or document about their request: their name and each part of it,
    their phone number as stored and as people write it, their address, postcode and date of birth, and what a
    referral sent that was to be checked; longest first, so a longer one is removed before a part of it."""
    values = {request.person_name, *request.person_name.split(), request.address, request.postcode or "",
              *phone_forms(request.person_phone)}
    if request.date_of_birth:
        born = request.date_of_birth
        values |= {born.isoformat(), f"{born:%d/%m/%Y}", f"{born:%d-%m-%Y}"}
    values |= {c["value"] for c in request.to_check if isinstance(c.get("value"), str)}
    values.discard(REMOVED_NAME)
    return sorted({v.strip() for v in values if v and len(v.strip()) >= 2}, key=lambda v: (-len(v), v))


def phone_forms(phone: str | None) -> set[str]:
    """A number as stored (E.164) and as people write it: national, with and without its spaces."""
    if not phone:
        return set()
    forms = {phone}
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return forms
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return forms | {national, national.replace(" ", ""), international, phone.lstrip("+")}


def scrubbed(value: Any, values: list[str]) -> Any:
    """`value` (a text, or a JSON document) with every one of `values` in it (in any case, and not as a part of a
    longer word: "Pat" goes, "Patient" stays) replaced by [removed]."""
    if isinstance(value, str):
        for personal in values:
            value = re.sub(rf"(?<!\w){re.escape(personal)}(?!\w)", REMOVED, value, flags=re.IGNORECASE)
        return value
    if isinstance(value, dict):
        return {key: scrubbed(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [scrubbed(item, values) for item in value]
    return value


def person_ref(person_id: uuid.UUID | None, secret_key: str) -> str:
    """A pseudonym for the person's record, so metrics and matching can tell one person's requests together without
    knowing who they are: the same for every request of the record (a merged record's requests carry the
    survivor's from then on)."""
    seed = str(person_id or "")
    return "p_" + hmac.new(secret_key.encode(), seed.encode(), hashlib.sha256).hexdigest()[:16]


def in_words(names: Iterable[str]) -> str:
    """What changed, in a coordinator's words, each once: "phone number, urgency"."""
    return ", ".join(dict.fromkeys(FIELD_WORDS.get(name, name.replace("_", " ")) for name in names))


def columns_from(data: dict[str, Any]) -> dict[str, Any]:
    """A request's attributes from loaded (possibly partial) input: the person, the window, the repeat, the
    referrer."""
    columns: dict[str, Any] = {}
    if person := data.get("person"):
        renames = {"name": "person_name", "phone": "person_phone"}
        columns.update({renames.get(k, k): v for k, v in person.items()})
    if "when" in data:
        when = data["when"]
        columns.update(window_start=when.get("start"), window_end=when.get("end"), window_days=when.get("days"),
                       window_part=when.get("part_of_day"))
    if "repeat" in data:
        repeat = data["repeat"] or {}
        columns.update(repeat_every_weeks=repeat.get("every_weeks"), repeat_occurrences=repeat.get("occurrences", 1))
    for name in ("support_type", "urgency", "preferences", "coordinator_notes"):
        if name in data:
            columns[name] = data[name]
    if data.get("befriending"):
        befriending = data["befriending"]
        columns["preferences"] = {**columns.get("preferences", {}), "befriending": {
            "rhythm": befriending["rhythm"], "review_on": befriending["review_on"].isoformat()}}
    if referrer := data.get("referrer"):
        columns.update(referrer_organisation=referrer["organisation"], referrer_name=referrer["name"],
                       referrer_contact=referrer["contact"], source=referrer["organisation_type"])
    if "reason" in data:
        columns["referral_reason"] = data["reason"]
    if data.get("external_id"):
        columns["external_id"] = data["external_id"]
    if data.get("to_check"):
        columns["to_check"] = data["to_check"]
    return columns


# --- a person, across their requests ---------------------------------------------------------------------------------


def name_key(name: str) -> str:
    """A name as records are compared by it: any case, spaces not counted twice."""
    return " ".join(name.lower().split())


class Person:
    """One person in one community, whatever requests are made for them: the details last known, when they were
    last asked about, and, once two records are found to be one person, the record this one was merged into."""

    def __init__(self, community: str, name: str, phone: str | None = None, date_of_birth: date | None = None,
                 address: str = "", postcode: str | None = None, id: uuid.UUID | None = None,
                 created_at: datetime | None = None):
        now = utcnow()
        self.id = id or uuid.uuid4()
        self.community, self.name, self.name_key = community, name, name_key(name)
        self.phone, self.date_of_birth, self.address, self.postcode = phone, date_of_birth, address, postcode
        self.created_at = created_at or now
        self.last_activity_at = self.created_at
        self.died_on: date | None = None
        self.merged_into: uuid.UUID | None = None
        self.monitoring: dict[str, Any] | None = None  # record_monitoring: their consent and answers

    @classmethod
    def of(cls, request: "SupportRequest") -> "Person":
        """A new record for the person a request is for."""
        return cls(community=request.community, name=request.person_name, phone=request.person_phone,
                   date_of_birth=request.date_of_birth, address=request.address, postcode=request.postcode,
                   created_at=request.created_at)

    def likeness(self, request: "SupportRequest") -> list[str]:
        """Why the request may be for this person, in a coordinator's words: the same phone number, the same name
        and date of birth (empty: no reason to think so)."""
        reasons = []
        if request.person_phone and request.person_phone == self.phone:
            reasons.append("the same phone number")
        if name_key(request.person_name) == self.name_key:
            if request.date_of_birth and request.date_of_birth == self.date_of_birth:
                reasons.append("the same name and date of birth")
            elif reasons:
                reasons.append("the same name")
        return reasons

    def forget(self) -> None:
        """Remove the details that identify the person (retention, once each of their requests has been
        pseudonymised, and erasure); the record stays, so their requests still count as one person's."""
        self.name, self.name_key, self.phone, self.date_of_birth = REMOVED_NAME, "", None, None
        self.address, self.postcode, self.monitoring = "", None, None

    def is_surely(self, request: "SupportRequest") -> bool:
        """True when the request is certainly for this person: the same phone number and the same name."""
        return bool(request.person_phone) and request.person_phone == self.phone and \
            name_key(request.person_name) == self.name_key

    def heard_of(self, request: "SupportRequest") -> None:
        """A request for the person was made: their details as it gives them are the last known."""
        for name, value in (("phone", request.person_phone), ("date_of_birth", request.date_of_birth),
                            ("address", request.address), ("postcode", request.postcode)):
            if value:
                setattr(self, name, value)
        self.last_activity_at = max(self.last_activity_at, request.created_at)

    def record_monitoring(self, consent: bool, answers: dict[str, str | None], country: str, by: str,
                          at: datetime) -> None:
        """Record whether the person consents to equity monitoring and, if they do, their answers (each optional,
        each may be "prefer not to say"). Without consent nothing of the answers is kept, and metrics forgets them."""
        ethnicity = answers.get("ethnicity")
        if consent and ethnicity not in (None, equity.PREFER_NOT) and ethnicity not in equity.ethnicities(country):
            raise NotAnAnswer(f"{ethnicity!r} is not one of the ethnicity categories asked in this community.")
        kept = {name: answers.get(name) for name in MONITORING_ANSWERS} if consent else {}
        self.monitoring = {"consent": consent, **kept, "recorded_by": by, "recorded_at": at.isoformat()}

    def monitored(self, country: str, secret_key: str, today: date) -> PersonMonitored:
        """What metrics may know for reach and equity: bands, groups and the decile of where they live, under the
        person's pseudonym; all None without consent. The age band comes from the date of birth when it is known
        (on `today`), else as given; the decile from the postcode (never sent itself)."""
        answers = self.monitoring or {}
        if not answers.get("consent"):
            return PersonMonitored(community=self.community, person_ref=person_ref(self.id, secret_key),
                                   consented=False)
        band = answers.get("age_band")
        if self.date_of_birth is not None and band != equity.PREFER_NOT:
            band = equity.age_band(self.date_of_birth, today)
        return PersonMonitored(
            community=self.community, person_ref=person_ref(self.id, secret_key), consented=True, age_band=band,
            sex=answers.get("sex"), ethnic_group=equity.group_of(answers.get("ethnicity"), country),
            first_language=answers.get("first_language"), disability=answers.get("disability"),
            deprivation_decile=equity.deprivation_decile(self.postcode, country))

    def record_death(self, died_on: date) -> None:
        """They died on that day; AlreadyDied if it was recorded before."""
        if self.died_on is not None:
            raise AlreadyDied(f"{self.name}'s death was recorded already ({self.died_on:%d %B %Y}).")
        self.died_on = died_on

    @property
    def first_name(self) -> str | None:
        """What a volunteer who knew them called them."""
        return self.name.split()[0] if self.name.strip() else None

    def merge(self, other: "Person") -> None:
        """Take in another record of the same person (NotMergeable for this one, or one merged already): what
        this one does not know it fills in, and the other points here from now on."""
        if other.id == self.id:
            raise NotMergeable("A record cannot be merged with itself.")
        if other.merged_into is not None or self.merged_into is not None:
            raise NotMergeable("That record was merged into another already.")
        for name in ("phone", "date_of_birth", "address", "postcode", "died_on", "monitoring"):
            if not getattr(self, name) and getattr(other, name):
                setattr(self, name, getattr(other, name))
        self.created_at = min(self.created_at, other.created_at)
        self.last_activity_at = max(self.last_activity_at, other.last_activity_at)
        other.merged_into = self.id


class CarerLink:
    """One person (`carer_id`) cares for another (`person_id`), in one community: both are people's records, each
    possibly with requests of their own."""

    def __init__(self, community: str, person_id: uuid.UUID, carer_id: uuid.UUID, created_by: str,
                 created_at: datetime | None = None, id: uuid.UUID | None = None):
        if person_id == carer_id:
            raise NotLinkable("A person cannot be their own carer.")
        self.id = id or uuid.uuid4()
        self.community, self.person_id, self.carer_id = community, person_id, carer_id
        self.created_by, self.created_at = created_by, created_at or utcnow()


def died_reason(died_on: date) -> str:
    """Why a person's requests closed, as their timeline, the board and their referrers read it."""
    return f"The person died on {died_on:%d %B %Y}"


AFTER_A_DEATH = "after a death"  # the timeline's mark on a carer's bereavement support offered at a death


def bereavement_offer(carer: Person, latest: "SupportRequest", died: Person, actor: Actor) -> "SupportRequest":
    """A bereavement support visit for a carer of someone who died, at the place and in the language of the carer's
    latest request, held until a coordinator has asked the carer and recorded their consent (never offered to
    volunteers by itself)."""
    why = (f"Offered after {died.name} died: ask {carer.name} whether they would like bereavement support, and "
           "record their consent, before volunteers are asked.")
    request = SupportRequest.submit(actor, {
        "person_name": carer.name, "person_phone": carer.phone, "address": carer.address, "postcode": carer.postcode,
        "area": latest.area, "latitude": latest.latitude, "longitude": latest.longitude,
        "preferred_language": latest.preferred_language, "date_of_birth": carer.date_of_birth, "is_carer": True,
        "support_type": "bereavement_visit", "window_days": ["mon", "tue", "wed", "thu", "fri"],
        "window_part": "afternoon", "to_check": [{"field": "bereavement.consent", "why": why, "value": None}]},
        {"share_contact": False, "sms_contact": False})
    request.person_id, request.cares_for_id = carer.id, died.id
    request.note(AFTER_A_DEATH, "Bereavement support offered after the death of the person they cared for",
                 actor.subject)
    return request


def best_match(candidates: Iterable[Person], request: "SupportRequest") -> tuple[Person | None, bool]:
    """Of the community's records, the one the request is most likely for, and whether it is certainly theirs
    (same phone and name: it may be linked; anything less is only offered to a coordinator). (None, False): none
    like it."""
    ranked = sorted(((len(p.likeness(request)), p.is_surely(request), p.last_activity_at, p) for p in candidates
                     if p.merged_into is None and p.likeness(request)), key=lambda t: (t[1], t[0], t[2]), reverse=True)
    if not ranked:
        return None, False
    return ranked[0][3], ranked[0][1]


# --- who may see a request --------------------------------------------------------------------------------------------


# --- organisations ------------------------------------------------------------------------------------------------


class Organisation:
    """An organisation in a community's register: who refers, partners and runs activities, with its type; an
    optional webhook that hears of every change to its referrals (signed with `webhook_secret`)."""

    def __init__(self, community: str, name: str, type: str, adopted_on: date | None = None,
                 webhook_url: str | None = None, webhook_secret: str | None = None, id: uuid.UUID | None = None):
        self.id = id or uuid.uuid4()
        self.community, self.name, self.type, self.adopted_on = community, name, type, adopted_on
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret

    def change(self, name: str, type: str, adopted_on: date | None, webhook_url: str | None) -> None:
        """New details; a webhook set for the first time gets its secret."""
        self.name, self.type, self.adopted_on = name, type, adopted_on
        self.webhook_url = webhook_url or None
        if self.webhook_url and not self.webhook_secret:
            self.webhook_secret = secrets.token_urlsafe(32)

    @property
    def source(self) -> str:
        """The source a referral from this organisation has (pcn, social_prescriber, partner, health_system)."""
        return ORGANISATION_TYPES[self.type][1]

    def absorb(self, duplicate: "Organisation") -> None:
        """Take over what a duplicate of this organisation had that it has not: its adoption date (the earlier of
        the two) and its webhook."""
        if duplicate.adopted_on and (self.adopted_on is None or duplicate.adopted_on < self.adopted_on):
            self.adopted_on = duplicate.adopted_on
        if self.webhook_url is None and duplicate.webhook_url:
            self.webhook_url, self.webhook_secret = duplicate.webhook_url, duplicate.webhook_secret

    def as_changed(self, merged_into: uuid.UUID | None = None) -> OrganisationChanged:
        """The organisation as the register now has it, for metrics (`merged_into`: it is now part of that one)."""
        return OrganisationChanged(organisation_id=self.id, community=self.community, name=self.name, type=self.type,
                                   adopted_on=self.adopted_on, merged_into=merged_into)


class OrganisationExists(IntakeError):
    """Another organisation in the community has that name."""


class SameOrganisation(IntakeError):
    """An organisation cannot be merged into itself."""


def within_reach(request: SupportRequest, actor: Actor) -> bool:
    """True when the request is in the actor's communities (and, for a referrer, one they made); the system sees
    every request."""
    if actor == SYSTEM:
        return True
    return actor.may_see(request.community) and (actor.role != "referrer" or referred_by(request, actor))


def referred_by(request: SupportRequest, actor: Actor) -> bool:
    """True when the request is a referral of the actor's organisation (for an account that names none, one the
    actor made), in one of their communities: colleagues follow each other's referrals, and no one else's (a
    subject or an organisation's name is not unique across communities: another community's token sees nothing)."""
    if request.referrer_organisation is None or not actor.may_see(request.community):
        return False
    if actor.organisation:
        return request.referrer_organisation == actor.organisation
    return request.created_by == actor.subject


def board_rank(request: SupportRequest, now: datetime) -> tuple:
    """Where a request comes on the board: those with a volunteer's concern open first, then the others needing a
    coordinator, then unmatched, then by urgency, then newest (sort ascending)."""
    return (0 if request.concerns_open > 0 else 1, 0 if request.needs_you(now) else 1,
            0 if request.status == "unmatched" else 1,
            URGENCY_RANK.get(request.urgency, 2), -request.created_at.timestamp())


# --- the safeguarding log: volunteers' concerns -----------------------------------------------------------------------

class Concern:
    """A volunteer's concern about the person a request is for, in the append-only safeguarding log: its words are
    written once and never changed; what coordinators did about it is appended (`ConcernAction`), and an action that
    closes it closes it. Only the request's community's coordinators and admins see it."""

    actions: list["ConcernAction"]

    def __init__(self, *, id: uuid.UUID, request_id: uuid.UUID, community: str, volunteer_id: uuid.UUID, text: str,
                 raised_at: datetime, opened_at: datetime):
        self.id, self.request_id, self.community, self.volunteer_id = id, request_id, community, volunteer_id
        self.text, self.raised_at, self.opened_at = text, raised_at, opened_at
        self.actions = []

    @property
    def closed_at(self) -> datetime | None:
        """When an action closed it (None while it is open)."""
        return next((a.at for a in self.actions if a.closes), None)

    @property
    def is_open(self) -> bool:
        """True until an action closes it."""
        return self.closed_at is None

    def act(self, action: str, note: str, by: str, at: datetime, close: bool) -> "ConcernAction":
        """Append what a coordinator did (and, with `close`, close it); ConcernClosed once it is closed."""
        if not self.is_open:
            raise ConcernClosed("This concern is closed: it takes no more actions.")
        done = ConcernAction(concern_id=self.id, action=action, note=note, by=by, at=at, closes=close)
        self.actions.append(done)
        return done


class ConcernAction:
    """What a coordinator did about a concern (CONCERN_ACTIONS), with their note; one that `closes` closes it."""

    def __init__(self, *, concern_id: uuid.UUID, action: str, note: str, by: str, at: datetime, closes: bool):
        self.concern_id, self.action, self.note = concern_id, action, note
        self.by, self.at, self.closes = by, at, closes


# --- the audit log ----------------------------------------------------------------------------------------------------


class AuditEntry:
    """Who created, viewed or changed a person's details, and when. Append-only."""

    def __init__(self, actor: str, role: str, action: str, request_id: uuid.UUID | None, fields: list[str],
                 at: datetime | None = None, person_id: uuid.UUID | None = None):
        self.actor, self.role, self.action = actor, role, action
        self.request_id, self.fields, self.person_id = request_id, fields, person_id
        self.at = at or utcnow()

    @classmethod
    def of(cls, actor: Actor, action: str, request_id: uuid.UUID | None, fields=(),
           person_id: uuid.UUID | None = None) -> "AuditEntry":
        """An entry for what `actor` did, naming the fields touched (and the person's record, for one about it)."""
        return cls(actor=actor.subject, role=actor.role, action=action, request_id=request_id, fields=sorted(fields),
                   person_id=person_id)


# --- people who sign in -----------------------------------------------------------------------------------------------


PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 256  # hashing is slow on purpose: a bound keeps one sign-in from costing much more
# Sign-in is refused (429) for an account, and for an address, that failed this many times within the window.
SIGN_IN_LIMIT = 5
SIGN_IN_WINDOW = timedelta(minutes=15)
TOKEN_ID = re.compile(r"[0-9a-f]{32}")


class Passwords(Protocol):
    """How passwords are kept: as a hash that can be checked, never as they were typed."""

    def hash(self, password: str) -> str:
        """A salted hash of the password, to store."""

    def matches(self, password_hash: str, password: str) -> bool:
        """True when the password is the one the hash was made from."""

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with an older algorithm than new ones are."""

    def is_common(self, password: str) -> bool:
        """True when the password is on the list of commonly used passwords."""


def check_password(password: str, passwords: Passwords, email: str = "") -> None:
    """A password someone may set: at least PASSWORD_MIN_LENGTH characters, not on the list of common passwords,
    not their email address; WeakPassword says what is wrong."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise WeakPassword(f"The password must be at least {PASSWORD_MIN_LENGTH} characters long (this one has "
                           f"{len(password)}); a few words that do not belong together make a good one.")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise WeakPassword(f"The password must be at most {PASSWORD_MAX_LENGTH} characters long.")
    if email and password.strip().lower() == email.strip().lower():
        raise WeakPassword("The password must not be the email address.")
    if passwords.is_common(password):
        raise WeakPassword("That password is on a list of commonly used passwords, so it would be easy to guess: "
                           "choose another.")


class FailedSignIn:
    """A sign-in that failed: for which account (as typed), from which address, when. Kept for the lock-out."""

    def __init__(self, account: str, address: str, at: datetime, id: int | None = None):
        self.id, self.account, self.address, self.at = id, account, address, at


def locked_for(failures: Iterable[datetime], now: datetime) -> int:
    """Seconds before another sign-in may be tried after these failures (of one account, or from one address): none
    while fewer than SIGN_IN_LIMIT fell within the last SIGN_IN_WINDOW, else until the oldest of the latest
    SIGN_IN_LIMIT leaves it."""
    recent = sorted(at for at in failures if at > now - SIGN_IN_WINDOW)
    if len(recent) < SIGN_IN_LIMIT:
        return 0
    return max(1, math.ceil((recent[-SIGN_IN_LIMIT] + SIGN_IN_WINDOW - now).total_seconds()))


def revocation(secret_key: str, *, jti: str | None = None, subject: str | None = None,
               now: datetime | None = None) -> TokenRevoked:
    """What `ccs tokens revoke` announces: one token by its id, or every token of `subject` issued before `now`
    (the holder named only by a keyed digest); InvalidRevocation if it names neither, or an id that cannot be one."""
    if (jti is None) == (subject is None):
        raise InvalidRevocation("Name a token by its id, or a user whose tokens to revoke (not both).")
    if jti is not None:
        jti = jti.strip().lower()
        if not TOKEN_ID.fullmatch(jti):
            raise InvalidRevocation(f"{jti!r} is not a token id (32 hexadecimal digits).")
        return TokenRevoked(jti=jti)
    if not subject.strip() or now is None:
        raise InvalidRevocation("Name the user whose tokens to revoke, and when from.")
    return TokenRevoked(subject_digest=subject_digest(secret_key, subject.strip()), issued_before=now)


class User:
    """Someone who signs in: an admin, coordinator, referrer or manager, in one or more communities."""

    def __init__(self, email: str, name: str, role: str, communities: list[str], password_hash: str,
                 organisation: str | None = None, active: bool = True, id: uuid.UUID | None = None,
                 created_at: datetime | None = None):
        self.id = id or uuid.uuid4()
        self.email, self.name, self.role, self.communities = email, name, role, communities
        self.organisation, self.password_hash, self.active = organisation, password_hash, active
        self.created_at = created_at or utcnow()


# --- what is plausible ------------------------------------------------------------------------------------------------

EARLIEST_BIRTH = date(1900, 1, 1)
WINDOW_AHEAD = timedelta(days=365)  # a one-off window ends at most a year ahead
LONGEST_WINDOW = timedelta(days=31)  # longer help is asked for as a recurring request


def window_problems(start: datetime, end: datetime, now: datetime) -> dict[str, str]:
    """What is implausible about a one-off window, by field: it starts from yesterday, ends after its start and at
    most a year ahead, and lasts at most 31 days (longer help is a recurring request)."""
    yesterday = datetime.combine(now.date() - timedelta(days=1), time.min, tzinfo=now.tzinfo)
    problems = {}
    if start < yesterday:
        problems["start"] = f"Must not be before yesterday ({yesterday.date().isoformat()})."
    if end <= start:
        problems["end"] = "Must be after start."
    elif end - start > LONGEST_WINDOW:
        problems["end"] = "Must be at most 31 days after start; ask for longer help as a recurring request (repeat)."
    elif end > now + WINDOW_AHEAD:
        problems["end"] = "Must be at most a year ahead."
    return problems


def birth_date_problem(born: date, today: date) -> str | None:
    """What is implausible about a date of birth: it is in the past, and not before 1900."""
    if born >= today:
        return "Must be in the past."
    if born < EARLIEST_BIRTH:
        return f"Must not be before {EARLIEST_BIRTH.isoformat()}."
    return None
