"""Intake's domain: a request for support with its consents and timeline, the rules that move its status on, what
matching and a volunteer may be told of it, the audit log, idempotency keys and the people who sign in.

Pure: no Flask, no database session, no environment. adapters.py maps these classes onto intake's tables.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from shared.auth import SYSTEM, Actor
from shared.clock import utcnow
from shared.contracts import EventPayload
from shared.contracts.intake import RequestSubmitted, TaskDetailsShared
from shared.contracts.matching import OfferAccepted, RequestUnmatched, TaskCompleted
from shared.taxonomy import KINDS, OPEN_REQUEST_STATUSES, REQUEST_STATUSES

CONSENTS = ("share_contact", "sms_contact")
FINAL_STATUSES = ("completed", "cancelled")
# What matching's events add to a request's timeline: (what, detail), the detail filled from the event's fields.
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
# The request's attributes matching knows of: a change to one of them is a `request.updated`.
MATCHING_FIELDS = ("support_type", "urgency", "latitude", "longitude", "area", "window_start", "window_end",
                   "window_days", "window_part", "repeat_every_weeks", "repeat_occurrences", "preferences")
# The board's order: unmatched first, then by urgency (urgent, soon, the rest), then newest.
URGENCY_RANK = {"urgent": 0, "soon": 1}
IDEMPOTENCY_KEY_LENGTH = 200


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


class InvalidIdempotencyKey(IntakeError):
    """An Idempotency-Key header that cannot be one."""


class IdempotencyKeyReused(IntakeError):
    """An Idempotency-Key sent again with a different request."""


class IdempotencyKeyInUse(IntakeError):
    """Another create with the same Idempotency-Key is being made at this moment."""


class UserExists(IntakeError):
    """A user with this email address exists already."""


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
                 source_document: dict[str, Any] | None = None, id: uuid.UUID | None = None):
        now = utcnow()
        self.id = id or uuid.uuid4()
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
        self.created_by, self.created_at, self.updated_at = created_by, now, now
        self.consents = []
        self.timeline = []

    @classmethod
    def submit(cls, actor: Actor, columns: dict[str, Any], consent: dict[str, bool],
               document: dict[str, Any] | None = None) -> "SupportRequest":
        """A new request in the actor's community, with its consents and the first line of its timeline."""
        request = cls(community=actor.community, created_by=actor.subject, source_document=document, **columns)
        request.record_consents(consent, actor.subject)
        via = f" (referred by {request.referrer_organisation})" if request.referrer_organisation else ""
        request.note("submitted", f"{KINDS[request.support_type].label}, {request.urgency}{via}", actor.subject)
        return request

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
            return True
        return False

    def consent(self, kind: str) -> bool:
        """The latest recorded answer for a kind of consent (no record means no)."""
        answers = [c.given for c in self.consents if c.kind == kind]
        return answers[-1] if answers else False

    def record_consents(self, answers: dict[str, bool], recorded_by: str) -> None:
        """Record each consent answer given that differs from the last one (all of them the first time)."""
        for kind in CONSENTS:
            if kind in answers and (not self.consents or self.consent(kind) != answers[kind]):
                self.consents.append(Consent(kind=kind, given=answers[kind], recorded_by=recorded_by))

    def note(self, what: str, detail: str = "", actor: str = "", at: datetime | None = None) -> None:
        """Add an entry to the request's timeline."""
        self.timeline.append(TimelineEntry(what=what, detail=detail, actor=actor, at=at))

    def edit(self, columns: dict[str, Any], consent: dict[str, bool] | None, by: str) -> list[str]:
        """Change what is different, record new consent answers, and note it; the names of what changed."""
        if not self.is_open:
            raise NotOpen(self.status, "changed")
        changed = sorted(name for name, value in columns.items() if getattr(self, name) != value)
        for name in changed:
            setattr(self, name, columns[name])
        if consent is not None:
            self.record_consents(consent, by)
            changed.append("consent")
        if changed:
            self.note("edited", ", ".join(changed), by)
        return changed

    def cancel(self, reason: str, by: str) -> None:
        """Cancel an open request, with the reason as its outcome; NotOpen if it was completed or cancelled."""
        if not self.advance("cancelled"):
            raise NotOpen(self.status, "cancelled")
        self.outcome = reason
        self.note("cancelled", reason, by)

    def follow(self, event_type: str, facts: EventPayload, at: datetime) -> None:
        """Note what matching did on the timeline, and move the status on where the event allows it."""
        what, detail = TIMELINE[event_type]
        sources, status = MOVES.get(event_type, (set(), None))
        if isinstance(facts, TaskCompleted):
            detail, last = completion(facts)
            status = status if last else None  # a recurring request stays matched until its last occurrence
        self.note(what, detail.format(**facts.as_dict()), "matching", at=at)
        if status and self.status in sources:
            self.status = status
            if isinstance(facts, RequestUnmatched):
                self.outcome = facts.reason
            elif status == "completed":
                self.outcome = "Completed"

    def for_matching(self, event: type[RequestSubmitted], secret_key: str) -> RequestSubmitted:
        """What matching may know of the request (`RequestSubmitted` or `RequestUpdated`): no name, phone,
        address, notes or reason; the person only as a pseudonym."""
        preferences = self.preferences or {}
        return event(
            request_id=self.id, community=self.community, source=self.source, support_type=self.support_type,
            urgency=self.urgency, latitude=self.latitude, longitude=self.longitude, area=self.area,
            window_start=self.window_start, window_end=self.window_end, window_days=self.window_days,
            window_part=self.window_part, repeat_every_weeks=self.repeat_every_weeks,
            repeat_occurrences=self.repeat_occurrences, volunteer_language=preferences.get("volunteer_language"),
            volunteer_gender=preferences.get("volunteer_gender"),
            person_ref=person_ref(self.person_name, self.person_phone, self.date_of_birth, secret_key),
            is_carer=self.is_carer, referrer_organisation=self.referrer_organisation)

    def details_for(self, accepted: OfferAccepted) -> TaskDetailsShared:
        """What the volunteer who accepted, and only they, may be told: the person's first name, address and phone
        where the person consented to sharing them; otherwise nothing, and the coordinator calls."""
        shared = self.consent("share_contact")
        return TaskDetailsShared(
            offer_id=accepted.offer_id, request_id=self.id, phone=accepted.phone, code=accepted.code,
            language=accepted.language, community=self.community, shared=shared,
            first_name=self.person_name.split()[0] if shared and self.person_name.strip() else None,
            address=", ".join(part for part in (self.address, self.postcode) if part) if shared else None,
            person_phone=self.person_phone if shared else None)


def completion(done: TaskCompleted) -> tuple[str, bool]:
    """The timeline's words for a task reported done, and whether it was the request's last occurrence."""
    detail, last = TIMELINE["task.completed"][1], done.occurrence >= done.occurrences
    if not last:
        detail = f"Occurrence {done.occurrence} of {done.occurrences} done"
    if done.hours:
        detail += f" ({done.hours:g} hours)"
    return detail, last


def person_ref(name: str, phone: str | None, date_of_birth: date | None, secret_key: str) -> str:
    """A pseudonym for the person, so metrics can count people without knowing who they are."""
    seed = "|".join([" ".join(name.lower().split()), phone or "", str(date_of_birth or "")])
    return "p_" + hmac.new(secret_key.encode(), seed.encode(), hashlib.sha256).hexdigest()[:16]


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
    if referrer := data.get("referrer"):
        columns.update(referrer_organisation=referrer["organisation"], referrer_name=referrer["name"],
                       referrer_contact=referrer["contact"], source=referrer["organisation_type"])
    if "reason" in data:
        columns["referral_reason"] = data["reason"]
    if data.get("external_id"):
        columns["external_id"] = data["external_id"]
    return columns


# --- who may see a request --------------------------------------------------------------------------------------------


def within_reach(request: SupportRequest, actor: Actor) -> bool:
    """True when the request is in the actor's communities (and, for a referrer, one they made); the system sees
    every request."""
    if actor == SYSTEM:
        return True
    return actor.may_see(request.community) and (actor.role != "referrer" or request.created_by == actor.subject)


def referred_by(request: SupportRequest, actor: Actor) -> bool:
    """True when the request is a referral the actor made."""
    return request.created_by == actor.subject and request.referrer_organisation is not None


def board_rank(request: SupportRequest) -> tuple:
    """Where a request comes on the board: unmatched first, then by urgency, then newest (sort ascending)."""
    return (0 if request.status == "unmatched" else 1, URGENCY_RANK.get(request.urgency, 2),
            -request.created_at.timestamp())


# --- the audit log ----------------------------------------------------------------------------------------------------


class AuditEntry:
    """Who created, viewed or changed a person's details, and when. Append-only."""

    def __init__(self, actor: str, role: str, action: str, request_id: uuid.UUID | None, fields: list[str],
                 at: datetime | None = None):
        self.actor, self.role, self.action = actor, role, action
        self.request_id, self.fields = request_id, fields
        self.at = at or utcnow()

    @classmethod
    def of(cls, actor: Actor, action: str, request_id: uuid.UUID | None, fields=()) -> "AuditEntry":
        """An entry for what `actor` did, naming the fields touched."""
        return cls(actor=actor.subject, role=actor.role, action=action, request_id=request_id, fields=sorted(fields))


# --- idempotency keys -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Idempotency:
    """A create sent with an Idempotency-Key: the key, a digest of the body, and the endpoint it was sent to."""

    key: str
    body_hash: str
    endpoint: str

    @classmethod
    def of(cls, key: str | None, body: bytes, endpoint: str) -> "Idempotency | None":
        """The create's idempotency (None without a key); InvalidIdempotencyKey if the key is too long."""
        if not key:
            return None
        if len(key) > IDEMPOTENCY_KEY_LENGTH:
            raise InvalidIdempotencyKey(f"Idempotency-Key must be at most {IDEMPOTENCY_KEY_LENGTH} characters.")
        return cls(key=key, body_hash=hashlib.sha256(body).hexdigest(), endpoint=endpoint)


class IdempotencyKey:
    """The first answer to a create made with an Idempotency-Key, to give again for the same key and body."""

    def __init__(self, subject: str, key: str, endpoint: str, body_hash: str, status_code: int,
                 response: dict[str, Any], created_at: datetime | None = None):
        self.subject, self.key, self.endpoint, self.body_hash = subject, key, endpoint, body_hash
        self.status_code = status_code
        self.response = json.loads(json.dumps(response, default=str))  # as it is stored, and answered again
        self.created_at = created_at or utcnow()

    @classmethod
    def remember(cls, actor: Actor, idempotency: Idempotency, status_code: int,
                 response: dict[str, Any]) -> "IdempotencyKey":
        """The answer to keep for the actor's key."""
        return cls(subject=actor.subject, key=idempotency.key, endpoint=idempotency.endpoint,
                   body_hash=idempotency.body_hash, status_code=status_code, response=response)

    def check(self, idempotency: Idempotency) -> None:
        """Raise IdempotencyKeyReused unless the key comes again with the same endpoint and body."""
        if self.endpoint != idempotency.endpoint or self.body_hash != idempotency.body_hash:
            raise IdempotencyKeyReused("This Idempotency-Key was used with a different request body.")


# --- people who sign in -----------------------------------------------------------------------------------------------


class Passwords(Protocol):
    """How passwords are kept: as a hash that can be checked, never as they were typed."""

    def hash(self, password: str) -> str:
        """A salted hash of the password, to store."""

    def matches(self, password_hash: str, password: str) -> bool:
        """True when the password is the one the hash was made from."""


class User:
    """Someone who signs in: an admin, coordinator, referrer or manager, in one or more communities."""

    def __init__(self, email: str, name: str, role: str, communities: list[str], password_hash: str,
                 organisation: str | None = None, active: bool = True, id: uuid.UUID | None = None,
                 created_at: datetime | None = None):
        self.id = id or uuid.uuid4()
        self.email, self.name, self.role, self.communities = email, name, role, communities
        self.organisation, self.password_hash, self.active = organisation, password_hash, active
        self.created_at = created_at or utcnow()
