"""Matching's domain: volunteers, the requests it is matching and the offers it makes, and the rules that decide
who may be asked for a request, in what order, and why.

Every eligibility rule has a name; `exclusion` gives the first rule that rules a volunteer out, so the same code
that chooses volunteers also explains to a coordinator why nobody was asked ("12 too far, 3 without bereavement
training"). Nothing here touches a database, Flask or the environment: the service layer gathers what the rules
need (through the repositories) and passes it in. adapters.py maps these classes onto matching's tables.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from shared import gazetteer
from shared.clock import months_after
from shared.taxonomy import BEFRIENDING_END_REASONS, CHECKS, DAYS, KINDS, RHYTHMS, VOLUNTEER_STATUSES

# Distances are the gazetteer's, one formula for every service (named here too, as matching's code reads them).
EARTH_RADIUS_KM, distance_km = gazetteer.EARTH_RADIUS_KM, gazetteer.distance_km
SOON_DAYS = 30  # a check expiring within this many days is shown, and reminded, as expiring

# open: waiting for an answer; accepted: the task is theirs; declined, expired, undeliverable: asked, no;
# withdrawn: someone else said yes first (or the request was cancelled, or they opted out of SMS); given_back: they
# cancelled after accepting; completed: done.
OFFER_STATUSES = ("open", "accepted", "declined", "expired", "undeliverable", "withdrawn", "given_back", "completed")
HOLDING = ("accepted", "completed")  # offers that became tasks
LIVE = ("open", "accepted")  # offers someone can still act on
# What each answer by SMS acts on: YES and NO an open offer, DONE and CANCEL an accepted one.
ANSWERS = {"YES": ("open",), "NO": ("open",), "DONE": ("accepted",), "CANCEL": ("accepted",)}
NOTIFY_ANSWERS = ("STOP", "START", "HELP")  # notify answers these itself, from any number
VIEWS = ("MY", "AWAY", "HOURS")  # a volunteer asking about themselves: their tasks, time away, hours
# A volunteer's concern (CONCERN) is about a task they hold, or one they did this recently.
CONCERN_RECENT = timedelta(days=14)
CONCERN_IDS = uuid.UUID("8f3c2e1a-7b6d-4c5e-9a8b-1d2c3b4a5e6f")  # the namespace a concern's id is made in
# The fields of a request that matching keeps, as intake's events carry them.
WHEN = ("window_start", "window_end", "window_days", "window_part")
REQUEST_FIELDS = ("community", "support_type", "urgency", "latitude", "longitude", "area", "volunteer_language",
                  "volunteer_gender", "person_ref", "repeat_every_weeks", "repeat_occurrences",
                  "befriending_rhythm", "review_on") + WHEN


def concern_id(message_sid: str) -> uuid.UUID:
    """A concern's id, made from the SMS that raised it: the same text, delivered again, is the same concern."""
    return uuid.uuid5(CONCERN_IDS, message_sid)


def concern_tasks(tasks: Iterable["Offer"], now: datetime, code: str | None = None) -> list["Offer"]:
    """The tasks a volunteer's concern may be about, one per request, latest first: with a code, their task with
    that code (the latest, as codes are used again); without, each task they hold now or did in the last
    CONCERN_RECENT."""
    latest_first = sorted(tasks, key=lambda o: o.answered_at or o.created_at, reverse=True)
    if code is not None:
        return [o for o in latest_first if o.code == code][:1]
    found: dict[uuid.UUID, Offer] = {}
    for offer in latest_first:
        done_lately = offer.completed_at is not None and offer.completed_at >= now - CONCERN_RECENT
        if offer.status == "accepted" or done_lately:
            found.setdefault(offer.request_id, offer)
    return list(found.values())


# --- errors the use cases raise ----------------------------------------------------------------------------------

class MatchingError(Exception):
    """A use case refused; the message says why, as the coordinator reads it."""


class NotFound(MatchingError):
    """No such volunteer or request, or not in the acting user's communities."""


class Conflict(MatchingError):
    """The change cannot be made in the state things are in (a phone already registered, a matched request)."""


class Invalid(MatchingError):
    """A value is not one the community's rules allow (a check it does not have): `messages` name the fields, nested
    as marshmallow's are (`{"checks": {0: {"check": ["..."]}}}`), so API and pages show them as their own."""

    def __init__(self, messages: dict[str, Any]):
        super().__init__("; ".join(_flat(messages)))
        self.messages = messages


def _flat(messages: dict[str, Any], prefix: str = "") -> list[str]:
    """'checks.0.check: Must be one of ...' for each message."""
    found = []
    for name, value in messages.items():
        if isinstance(value, dict):
            found += _flat(value, f"{prefix}{name}.")
        else:
            found += [f"{prefix}{name}: {message}" for message in value]
    return found


# --- entities ----------------------------------------------------------------------------------------------------

@dataclass(eq=False, kw_only=True)
class VolunteerCheck:
    """That a check or training was done, and when it expires: never the certificate itself."""

    check: str
    done_on: date
    expires_on: date | None = None
    reminded_for: date | None = None  # the expiry date a reminder went out for
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    volunteer_id: uuid.UUID | None = None

    def valid_on(self, day: date) -> bool:
        """Done by `day`, and not expired before it."""
        return self.done_on <= day and (self.expires_on is None or self.expires_on >= day)

    def state(self, today: date) -> str:
        """'expired', 'expiring' (within SOON_DAYS) or 'valid'."""
        if self.expires_on is None or self.expires_on > today + timedelta(days=SOON_DAYS):
            return "valid"
        return "expired" if self.expires_on < today else "expiring"

    def needs_reminder(self, today: date, days_ahead: int = SOON_DAYS) -> bool:
        """It expires within `days_ahead` days (and has not expired), and no reminder went out for that date."""
        return (self.expires_on is not None and today <= self.expires_on <= today + timedelta(days=days_ahead)
                and self.reminded_for != self.expires_on)


@dataclass(eq=False, kw_only=True)
class TimeAway:
    """Days a volunteer is away (holidays, illness): they are not asked for tasks on those days."""

    starts_on: date
    ends_on: date
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    volunteer_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Place:
    """Where a volunteer lives, as the gazetteer or a coordinator gives it."""

    latitude: float
    longitude: float
    postcode: str | None = None
    area: str = ""


@dataclass(eq=False, kw_only=True)
class Volunteer:
    """A trained volunteer: what they can do, where they live, how far they will go, and when they are free."""

    community: str
    name: str = ""
    phone: str = ""
    postcode: str | None = None
    area: str = ""
    latitude: float = 0.0
    longitude: float = 0.0
    max_distance_km: float = 10.0
    skills: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=lambda: ["en"])
    gender: str | None = None
    availability: list[str] = field(default_factory=list)  # weekly windows as "mon:morning"; none: any time
    weekly_cap: int = 3
    status: str = "active"  # VOLUNTEER_STATUSES
    sms_opted_out_at: datetime | None = None
    created_at: datetime | None = None  # set when stored
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    checks: list[VolunteerCheck] = field(default_factory=list, repr=False)
    time_away: list[TimeAway] = field(default_factory=list, repr=False)

    @property
    def first_language(self) -> str | None:
        """The language a volunteer is texted in: the first they listed."""
        return (self.languages or [None])[0]

    def change_status(self, status: str) -> str | None:
        """Pause, resume or record that they left; the previous status if it changed, else None."""
        if status not in VOLUNTEER_STATUSES:
            raise ValueError(f"status must be one of {', '.join(VOLUNTEER_STATUSES)}")
        if status == self.status:
            return None
        previous, self.status = self.status, status
        return previous

    def move_to(self, place: Place) -> None:
        """Record where they now live."""
        self.latitude, self.longitude = place.latitude, place.longitude
        self.postcode, self.area = place.postcode, place.area

    def update(self, profile: dict[str, Any], place: Place | None = None) -> None:
        """Take the fields given (a validated profile): availability as weekly windows, checks given replace those
        of the same kind, time away given replaces the list."""
        profile = {name: value for name, value in profile.items() if name not in ("postcode", "latitude", "longitude")}
        if place is not None:
            self.move_to(place)
        if "availability" in profile:
            self.availability = sorted({f"{day}:{window['part_of_day']}" for window in profile.pop("availability")
                                        for day in window["days"]})
        if "checks" in profile:
            given = {c["check"]: c for c in profile.pop("checks")}
            kept = [c for c in self.checks if c.check not in given]
            for existing in self.checks:
                if existing.check in given:
                    renewed = given.pop(existing.check)
                    existing.done_on, existing.expires_on = renewed["done_on"], renewed["expires_on"]
                    kept.append(existing)
            self.checks = kept + [VolunteerCheck(**c) for c in given.values()]
        if "time_away" in profile:
            self.time_away = [TimeAway(**t) for t in profile.pop("time_away")]
        for name, value in profile.items():
            setattr(self, name, value)

    def away(self, starts_on: date, ends_on: date) -> bool:
        """Record days away (as AWAY by SMS does); False when exactly those days were recorded already."""
        if any((t.starts_on, t.ends_on) == (starts_on, ends_on) for t in self.time_away):
            return False
        self.time_away.append(TimeAway(starts_on=starts_on, ends_on=ends_on, volunteer_id=self.id))
        return True

    def windows(self) -> list[dict[str, Any]]:
        """Their availability as weekly windows: the days of each part of the day."""
        by_part: dict[str, list[str]] = {}
        for slot in self.availability:
            day, part = slot.split(":")
            by_part.setdefault(part, []).append(day)
        return [{"days": sorted(days, key=DAYS.index), "part_of_day": part} for part, days in by_part.items()]


@dataclass(eq=False, kw_only=True)
class Offer:
    """A request offered to one volunteer, answered by replying to an SMS with its code."""

    request_id: uuid.UUID
    volunteer_id: uuid.UUID
    code: str
    volunteer: Volunteer | None = field(default=None, repr=False)
    status: str = "open"  # OFFER_STATUSES
    round: int = 1
    occurrence: int = 1
    distance_km: float = 0.0
    created_at: datetime | None = None
    sent_at: datetime | None = None  # when notify says the SMS went
    expires_at: datetime | None = None  # set once it is sent
    answered_at: datetime | None = None
    completed_at: datetime | None = None
    hours: float | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def sent(self, at: datetime, minutes_to_answer: int) -> None:
        """Its SMS went: the time to answer starts now."""
        self.sent_at = at
        self.expires_at = at + timedelta(minutes=minutes_to_answer)

    def accept(self, now: datetime) -> None:
        """The volunteer has the task."""
        self.status, self.answered_at = "accepted", now

    def decline(self, now: datetime) -> None:
        """The volunteer said no."""
        self.status, self.answered_at = "declined", now

    def complete(self, now: datetime, hours: float | None) -> None:
        """The volunteer did the task (and may say how long it took)."""
        self.status, self.completed_at, self.hours = "completed", now, hours

    def give_back(self, now: datetime) -> None:
        """The volunteer cancelled after accepting."""
        self.status, self.answered_at = "given_back", now


@dataclass(eq=False, kw_only=True)
class MatchRequest:
    """What matching knows of a request: only what it needs to find someone."""

    request_id: uuid.UUID = field(default_factory=uuid.uuid4)
    community: str = ""
    support_type: str = ""
    latitude: float = 0.0
    longitude: float = 0.0
    area: str = ""
    urgency: str = "routine"
    window_start: datetime | None = None
    window_end: datetime | None = None
    window_days: list[str] | None = None
    window_part: str | None = None
    volunteer_language: str | None = None
    volunteer_gender: str | None = None
    person_ref: str = ""  # a pseudonym, for continuity
    status: str = "open"  # open, matched, unmatched, cancelled, completed
    repeat_every_weeks: int | None = None
    repeat_occurrences: int = 1
    occurrence: int = 1  # which of the occurrences is being matched
    round: int = 0  # batches of offers made so far
    given_back: bool = False  # a volunteer cancelled: match it first
    unmatched_reason: str | None = None
    correlation_id: str = ""
    sequence: int = 0  # the number of the last event published about it (`numbered`)
    befriending_rhythm: str | None = None  # a befriending request: offered once, visited at this rhythm
    review_on: date | None = None  # a befriending match's first review (else REVIEW_AFTER_MONTHS after it starts)
    offers: list[Offer] = field(default_factory=list, repr=False)

    def when(self) -> dict[str, Any]:
        """When the help is wanted, as the events carry it."""
        return {name: getattr(self, name) for name in WHEN}

    def numbered(self, event: Any) -> Any:
        """An event about this request with the request's next sequence number, so that whoever reads them can
        tell which is the latest whatever order they arrive in (the caller holds the request's lock)."""
        self.sequence += 1
        return event.replace(sequence=self.sequence)

    def current_offers(self) -> list[Offer]:
        """The offers for the occurrence being matched (a recurring request has one task per occurrence)."""
        return [o for o in self.offers if o.occurrence == self.occurrence]

    def asked(self) -> set[uuid.UUID]:
        """The volunteers asked for this occurrence."""
        return {o.volunteer_id for o in self.current_offers()}

    def previous_volunteer(self) -> uuid.UUID | None:
        """Who did the previous occurrence of a recurring request, if anyone."""
        return next((o.volunteer_id for o in self.offers
                     if o.occurrence == self.occurrence - 1 and o.status == "completed"), None)

    def offer_to(self, volunteer: Volunteer, code: str, now: datetime, distance_km: float = 0.0) -> Offer:
        """Make an offer of this occurrence, in this round, to a volunteer: the one way an offer is made."""
        offer = Offer(request_id=self.request_id, volunteer_id=volunteer.id, volunteer=volunteer, code=code,
                      round=self.round, occurrence=self.occurrence, distance_km=round(distance_km, 2),
                      created_at=now)
        self.offers.append(offer)
        return offer

    def waiting_on_nobody(self) -> bool:
        """Still open, and nobody in the current batch can still say yes (so the next batch is due)."""
        return self.status == "open" and not any(o.status in LIVE for o in self.current_offers())

    def give_up(self, reason: str) -> None:
        """Nobody could be found; the reason is for the coordinator."""
        self.status, self.unmatched_reason = "unmatched", reason[:500]

    def given_back_by_volunteer(self) -> None:
        """The volunteer who had it cancelled: it goes to the front of matching again, from the first round."""
        self.status, self.given_back, self.round, self.urgency = "open", True, 0, "urgent"

    def start_again(self) -> None:
        """A coordinator has an unmatched request matched again, from the first round."""
        self.status, self.round, self.unmatched_reason = "open", 0, None

    def has_more_occurrences(self) -> bool:
        """A recurring request with occurrences still to come."""
        return self.occurrence < self.repeat_occurrences

    def next_occurrence(self) -> None:
        """Move a recurring request on to its next occurrence, its window a repeat later."""
        self.occurrence += 1
        self.round, self.given_back, self.status = 0, False, "open"
        if self.window_start is not None:
            shift = timedelta(weeks=self.repeat_every_weeks or 1)
            self.window_start, self.window_end = self.window_start + shift, self.window_end + shift

    def update_details(self, details: Any) -> None:
        """Take the newer details of a request (an update carries every field matching uses). Its window is the
        first occurrence's, as logged: a recurring request past its first keeps to its own occurrence's window."""
        for name in REQUEST_FIELDS:
            setattr(self, name, getattr(details, name))
        if self.window_start is not None and self.occurrence > 1:
            shift = timedelta(weeks=(self.repeat_every_weeks or 1) * (self.occurrence - 1))
            self.window_start, self.window_end = self.window_start + shift, self.window_end + shift


# --- befriending: a long-term match, visited at a rhythm --------------------------------------------------------

GRACE_DAYS = 3  # a visit is overdue its rhythm and this many days after the last (or the start)
REVIEW_AFTER_MONTHS = 3  # a match's review, unless the coordinator chose a date
SHORTEST_OVERDUE_DAYS = 7 + GRACE_DAYS  # no visit can be overdue sooner after the last (weekly, and the grace)


def visit_due_on(rhythm: str, since: date) -> date:
    """When the next visit is due, a rhythm after the last visit (or the start)."""
    if rhythm not in RHYTHMS:
        raise ValueError(f"rhythm must be one of {', '.join(RHYTHMS)}")
    if rhythm == "monthly":
        return months_after(since, 1)
    return since + timedelta(weeks=1 if rhythm == "weekly" else 2)


def overdue_on(rhythm: str, since: date) -> date:
    """The first day a visit is overdue: its rhythm and GRACE_DAYS after the last visit (or the start)."""
    return visit_due_on(rhythm, since) + timedelta(days=GRACE_DAYS)


@dataclass(eq=False, kw_only=True)
class BefriendingVisit:
    """One visit of a befriending match, as its volunteer texted DONE (`message_sid`: their text's; None when a
    coordinator recorded it), so that a text handled twice is one visit."""

    match_id: uuid.UUID | None = None
    visited_on: date
    hours: float | None = None
    message_sid: str | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(eq=False, kw_only=True)
class BefriendingMatch:
    """A volunteer's long-term match with a person (through a request): visited at a rhythm, reviewed, and ended
    with a reason. It stays open through every visit; a one-off task would close."""

    request_id: uuid.UUID
    offer_id: uuid.UUID
    volunteer_id: uuid.UUID
    community: str
    support_type: str
    rhythm: str
    started_on: date
    review_on: date
    last_visit_on: date | None = None
    visits: int = 0
    reminded_for: date | None = None  # the `since` of the overdue spell a reminder went for
    ended_on: date | None = None
    end_reason: str | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    logged: list[BefriendingVisit] = field(default_factory=list, repr=False)

    @property
    def since(self) -> date:
        """The last visit, or the start: what the next visit is due after."""
        return self.last_visit_on or self.started_on

    @property
    def open(self) -> bool:
        return self.ended_on is None

    def overdue(self, today: date) -> bool:
        """Open, and no visit for its rhythm and GRACE_DAYS more."""
        return self.open and today >= overdue_on(self.rhythm, self.since)

    def needs_reminder(self, today: date) -> bool:
        """Overdue, and its volunteer not yet reminded of this spell (once per spell, not every day)."""
        return self.overdue(today) and self.reminded_for != self.since

    def review_due(self, today: date) -> bool:
        """Open, and its review date has come."""
        return self.open and today >= self.review_on

    def log_visit(self, day: date, hours: float | None, message_sid: str | None = None) -> BefriendingVisit | None:
        """A visit done on `day`; None (nothing logged) for a text already logged, or a match that ended."""
        if not self.open or (message_sid is not None and any(v.message_sid == message_sid for v in self.logged)):
            return None
        visit = BefriendingVisit(match_id=self.id, visited_on=day, hours=hours, message_sid=message_sid)
        self.logged.append(visit)
        self.visits += 1
        self.last_visit_on = max(day, self.last_visit_on or day)
        return visit

    def weeks(self, until: date) -> int:
        """Whole weeks from its start to `until`."""
        return max(0, (until - self.started_on).days // 7)

    def end(self, day: date, reason: str) -> None:
        """End the match, with one of BEFRIENDING_END_REASONS."""
        if reason not in BEFRIENDING_END_REASONS:
            raise ValueError(f"reason must be one of {', '.join(BEFRIENDING_END_REASONS)}")
        if not self.open:
            raise Conflict("This befriending match has ended already.")
        self.ended_on, self.end_reason = day, reason


@dataclass(eq=False, kw_only=True)
class CancelledEarly:
    """A cancellation that arrived before its request did (several workers, or a retry, can reorder events)."""

    request_id: uuid.UUID
    at: datetime | None = None


# --- checks and training, as each community defines them -------------------------------------------------------

CHECK_KEY = re.compile(r"^[a-z][a-z0-9_]{1,31}$")  # as volunteer_checks.check stores it
LONGEST_LIFE_MONTHS = 120  # a check lasts at most ten years (as `check_problems` holds a recorded check to)


@dataclass(frozen=True, kw_only=True)
class CheckDefinition:
    """A check or training as a community defines it: its name as the community words it, the evidence a
    coordinator sees, and how long it lasts (None: it does not expire). A retired one is no longer asked for or
    recorded; the records volunteers hold of it stay. A value, so a process can keep it (`CheckRules`)."""

    key: str
    name: str
    evidence: str = ""
    lasts_months: int | None = None
    retired: bool = False

    def facts(self) -> dict[str, Any]:
        """What the audit trail keeps of it, before and after a change."""
        return {"name": self.name, "evidence": self.evidence, "lasts_months": self.lasts_months,
                "retired": self.retired}


@dataclass(eq=False, kw_only=True)
class CheckType:
    """A community's own definition of a check (a row: one it added, or a default it changed)."""

    community: str
    key: str
    name: str
    evidence: str = ""
    lasts_months: int | None = None
    retired: bool = False
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def definition(self) -> CheckDefinition:
        """The check as the rules read it."""
        return CheckDefinition(key=self.key, name=self.name, evidence=self.evidence, lasts_months=self.lasts_months,
                               retired=self.retired)

    def facts(self) -> dict[str, Any]:
        """What the audit trail keeps of it, before and after a change."""
        return self.definition().facts()


def check_expires_on(check_type: CheckDefinition | CheckType | None, done_on: date) -> date | None:
    """When a check of this type done on `done_on` expires: `lasts_months` later (the last day of a shorter month);
    None when it does not expire, or its type is not known. The one place that says so: the volunteer form and API,
    and anything that grants a check (training attended), ask it."""
    if check_type is None or check_type.lasts_months is None:
        return None
    return months_after(done_on, check_type.lasts_months)


@dataclass(eq=False, kw_only=True)
class KindRequirement:
    """The checks a community asks for one kind of help, in place of the defaults for that kind."""

    community: str
    kind: str
    checks: list[str]
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(eq=False, kw_only=True)
class CheckRuleChange:
    """One change to a community's check types or requirements: who made it, when, and what it was before and
    after (`subject`: "check_type:<key>" or "requirement:<kind>"). The rules' audit trail."""

    community: str
    subject: str
    before: dict[str, Any] | None
    after: dict[str, Any]
    at: datetime
    actor: str
    role: str
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True)
class CheckRules:
    """A community's check types (retired ones too, for the names of checks held) and the checks each kind of help
    needs, as matching applies them: the taxonomy's defaults, then the community's block in communities.json, then
    what its administrators changed (the rows). A community that defines nothing has exactly the taxonomy's."""

    types: dict[str, CheckDefinition]
    requires: dict[str, tuple[str, ...]]  # by kind: the keys of the unretired checks it needs, in the types' order

    @classmethod
    def of(cls, community: str, configured: dict[str, Any] | None = None,
           configured_requirements: dict[str, list[str]] | None = None, types: Iterable[CheckType] = (),
           requirements: Iterable[KindRequirement] = ()) -> "CheckRules":
        """The rules of a community: the defaults, its configured block (`checks`: key to {"name", "evidence",
        "lasts_months"}; `requirements`: kind to keys), and its rows over both."""
        found = {key: CheckDefinition(key=key, name=name) for key, name in CHECKS.items()}
        for key, given in (configured or {}).items():
            default = found.get(key)
            found[key] = CheckDefinition(key=key, name=given.get("name") or (default.name if default else key),
                                         evidence=given.get("evidence", ""), lasts_months=given.get("lasts_months"),
                                         retired=bool(given.get("retired", False)))
        for check_type in types:
            found[check_type.key] = check_type.definition()
        needs = {kind: list(details.checks) for kind, details in KINDS.items()}
        needs.update({kind: list(keys) for kind, keys in (configured_requirements or {}).items()})
        needs.update({row.kind: list(row.checks) for row in requirements})
        order = list(found)
        requires = {kind: tuple(sorted({k for k in keys if k in found and not found[k].retired}, key=order.index))
                    for kind, keys in needs.items()}
        return cls(found, requires)

    def needed(self, kind: str) -> tuple[str, ...]:
        """The checks a volunteer must hold, in date, to be asked for this kind of help."""
        return self.requires.get(kind, ())

    def name(self, key: str) -> str:
        """A check's name as the community words it (its key, for a check nobody defines any more)."""
        found = self.types.get(key)
        return found.name if found else CHECKS.get(key, key)

    def active(self) -> dict[str, str]:
        """The checks that may be recorded and required now, key to name."""
        return {key: t.name for key, t in self.types.items() if not t.retired}

    def expires_on(self, key: str, done_on: date) -> date | None:
        """When a check of this community's done on `done_on` expires (`check_expires_on`)."""
        return check_expires_on(self.types.get(key), done_on)


DEFAULT_RULES = CheckRules.of("")  # the taxonomy's: what a community that defines nothing applies


def check_type_problems(name: str | None, lasts_months: int | None) -> dict[str, str]:
    """What is wrong with a check type's fields, by field: a name, and a life of 1 to 120 months if any."""
    problems = {}
    if name is not None and not name.strip():
        problems["name"] = "Must not be blank."
    if lasts_months is not None and not 1 <= lasts_months <= LONGEST_LIFE_MONTHS:
        problems["lasts_months"] = f"Must be from 1 to {LONGEST_LIFE_MONTHS} months, or empty if it does not expire."
    return problems


# --- the policy and the rules -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """The numbers a programme may tune (bootstrap reads them from the environment variables in brackets)."""

    batch_size: int = 3  # offers sent at once; the first YES wins (CCS_OFFER_BATCH)
    max_rounds: int = 3  # batches before a request is unmatched (CCS_MAX_ROUNDS)
    request_radius_km: float = 15.0  # how far a volunteer may be from the person (CCS_REQUEST_RADIUS_KM)
    # minutes to answer an offer, by urgency (CCS_OFFER_MINUTES sets routine; soon and urgent follow)
    offer_minutes: dict[str, int] = field(default_factory=lambda: {"routine": 30, "soon": 20, "urgent": 10})
    fairness_km: float = 2.0  # each offer or task in the last 28 days counts as this much further away
    continuity_km: float = 10.0  # having helped this person before counts as this much nearer
    recent_days: int = 28

    @staticmethod
    def minutes_by_urgency(routine: int) -> dict[str, int]:
        """Minutes to answer for each urgency, from the routine minutes: soon two thirds, urgent a third."""
        return {"routine": routine, "soon": max(1, routine * 2 // 3), "urgent": max(1, routine // 3)}

    def minutes_to_answer(self, urgency: str) -> int:
        """How long a volunteer has to answer an offer of this urgency."""
        return self.offer_minutes.get(urgency, 30)


def part_of_day(moment: datetime) -> str:
    """Morning before noon, afternoon until five, evening after."""
    return "morning" if moment.hour < 12 else "afternoon" if moment.hour < 17 else "evening"


def task_slots(request: Any, zone: ZoneInfo, today: date) -> list[tuple[date, str]]:
    """The (day, part of day) slots the task could happen in, in the community's time zone.

    A one-off window is one slot; "any weekday afternoon" is each such day in the coming week."""
    if request.window_start is not None:
        start = request.window_start.astimezone(zone)
        return [(start.date(), part_of_day(start))]
    days = [today + timedelta(days=n) for n in range(1, 8)]
    wanted = set(request.window_days or DAYS)
    return [(day, request.window_part or "afternoon") for day in days if DAYS[day.weekday()] in wanted]


@dataclass
class Facts:
    """What the rules need to know about one volunteer beyond their profile, gathered by the caller."""

    distance_km: float
    tasks_in_week: dict[date, int] = field(default_factory=dict)  # tasks held, by the Monday of each week
    recent_load: int = 0  # offers and tasks in the last `recent_days`
    helped_before: bool = False
    asked: bool = False  # already asked for this request


@dataclass(frozen=True)
class HeldTask:
    """A task a volunteer holds or held (an accepted or completed offer), as the rules weigh it.

    `window_start` is its request's window now, at the request's `request_occurrence`; the task is of
    `occurrence`, whose window was that many repeats earlier (`when`)."""

    volunteer_id: uuid.UUID
    answered_at: datetime | None
    window_start: datetime | None
    person_ref: str
    occurrence: int
    request_occurrence: int
    repeat_every_weeks: int | None

    def when(self) -> datetime | None:
        """The start of this task's own window (its occurrence's), else when it was accepted."""
        if self.window_start is None:
            return self.answered_at
        repeats = self.request_occurrence - self.occurrence
        return self.window_start - timedelta(weeks=(self.repeat_every_weeks or 1) * repeats)


def facts_for(request: MatchRequest, found: list[tuple[Any, float]], recent_load: dict[uuid.UUID, int],
              held: Iterable[HeldTask], now: datetime) -> dict[uuid.UUID, Facts]:
    """What the rules need about each volunteer found: their load, their tasks by week, and any history here."""
    # Someone whose offer was withdrawn (another said yes first) may be asked again if the task comes back.
    asked = {o.volunteer_id for o in request.current_offers() if o.status != "withdrawn"}
    facts = {v.id: Facts(distance_km=d, asked=v.id in asked, recent_load=recent_load.get(v.id, 0))
             for v, d in found}
    for task in held:
        day = (task.when() or now).date()
        monday = day - timedelta(days=day.weekday())
        weeks = facts[task.volunteer_id].tasks_in_week
        weeks[monday] = weeks.get(monday, 0) + 1
        if request.person_ref and task.person_ref == request.person_ref:
            facts[task.volunteer_id].helped_before = True
    return facts


def _check_valid(volunteer: Any, check: str, on: date) -> bool:
    """The volunteer holds this check, in date on that day."""
    return any(c.check == check and c.done_on <= on and (c.expires_on is None or c.expires_on >= on)
               for c in volunteer.checks)


def _away(volunteer: Any, on: date) -> bool:
    """The volunteer is away that day."""
    return any(t.starts_on <= on <= t.ends_on for t in volunteer.time_away)


def profile_exclusion(volunteer: Any, request: Any, distance: float, slots: list[tuple[date, str]],
                      policy: Policy, rules: CheckRules = DEFAULT_RULES) -> tuple[str | None, list[date]]:
    """The first rule that the volunteer's profile alone rules them out by (see `exclusion`), or None; and the days
    of the task's slots they are free on (not away, and available then), which the weekly cap is judged on. The
    checks are those the community's `rules` ask for the kind of help."""
    kind = KINDS[request.support_type]
    if volunteer.status != "active":
        return "status", []
    if volunteer.sms_opted_out_at is not None:
        return "sms", []
    if kind.skill not in volunteer.skills:
        return "skill", []
    for check in rules.needed(request.support_type):
        if not any(_check_valid(volunteer, check, day) for day, _ in slots):
            return f"check:{check}", []
    if slots and all(_away(volunteer, day) for day, _ in slots):
        return "away", []
    free = [(day, part) for day, part in slots if not _away(volunteer, day)]
    if volunteer.availability:
        free = [(day, part) for day, part in free if f"{DAYS[day.weekday()]}:{part}" in volunteer.availability]
        if not free:
            return "availability", []
    if distance > min(volunteer.max_distance_km, policy.request_radius_km):
        return "too_far", []
    if request.volunteer_language and request.volunteer_language not in volunteer.languages:
        return "language", []
    if request.volunteer_gender and request.volunteer_gender != volunteer.gender:
        return "gender", []
    return None, [day for day, _ in free]


def load_exclusion(weekly_cap: int, free_days: Iterable[date], facts: Facts) -> str | None:
    """The rules after the profile's, which need the volunteer's tasks and offers: at their weekly cap on every day
    they are free, or already asked."""
    free_days = list(free_days)
    if free_days and all(facts.tasks_in_week.get(day - timedelta(days=day.weekday()), 0) >= weekly_cap
                         for day in free_days):
        return "weekly_cap"
    if facts.asked:
        return "already_asked"
    return None


def exclusion(volunteer: Any, request: Any, facts: Facts, slots: list[tuple[date, str]], policy: Policy,
              rules: CheckRules = DEFAULT_RULES) -> str | None:
    """The first rule that rules this volunteer out for this request, or None if they may be asked.

    Rules, in order: status, sms, skill, check:<name>, away, availability, too_far, language, gender,
    weekly_cap, already_asked. Checks, time away, availability and the weekly cap are judged on the days the
    task could happen: the volunteer must be able to take at least one of them. The first nine read only the
    volunteer's profile (`profile_exclusion`, which the candidate index judges over arrays); the last two their
    tasks and offers (`load_exclusion`)."""
    rule, free_days = profile_exclusion(volunteer, request, facts.distance_km, slots, policy, rules)
    return rule or load_exclusion(volunteer.weekly_cap, free_days, facts)


@dataclass(frozen=True)
class Suited:
    """A volunteer whose profile lets them be asked for a request: what the last rules and the ranking need of
    them, so that only the volunteers finally asked are loaded whole."""

    id: uuid.UUID
    name: str
    distance_km: float
    weekly_cap: int
    free_days: tuple[date, ...]


def judge_profiles(found: Iterable[tuple[Any, float]], request: Any, slots: list[tuple[date, str]],
                   policy: Policy, rules: CheckRules = DEFAULT_RULES) -> tuple[list[Suited], Counter]:
    """The volunteers found (with their distance) whose profile lets them be asked, nearest first, and how many of
    the others each profile rule ruled out: the rules one volunteer at a time, as the candidate index's arrays
    must judge them."""
    chosen, excluded = [], Counter()
    for volunteer, distance in found:
        rule, free_days = profile_exclusion(volunteer, request, distance, slots, policy, rules)
        if rule is None:
            chosen.append(Suited(volunteer.id, volunteer.name, distance, volunteer.weekly_cap, tuple(free_days)))
        else:
            excluded[rule] += 1
    return sorted(chosen, key=lambda s: (s.distance_km, s.name)), excluded


@dataclass(frozen=True)
class Candidate:
    """A volunteer who may be asked, with their place in the order and why."""

    volunteer: Any
    score: float
    distance_km: float
    reasons: tuple[str, ...]


def rank(eligible: Iterable[tuple[Any, Facts]], policy: Policy) -> list[Candidate]:
    """Order by distance, adjusted for fairness (fewer recent offers and tasks first) and continuity
    (someone who helped this person before comes first); ties go by name."""
    ranked = []
    for volunteer, facts in eligible:
        score = facts.distance_km + policy.fairness_km * facts.recent_load
        reasons = [f"{facts.distance_km:.1f} km away",
                   f"{facts.recent_load} offer{'s' if facts.recent_load != 1 else ''} or tasks "
                   f"in {policy.recent_days} days"]
        if facts.helped_before:
            score -= policy.continuity_km
            reasons.append("has helped this person before")
        ranked.append(Candidate(volunteer, round(score, 3), facts.distance_km, tuple(reasons)))
    return sorted(ranked, key=lambda c: (c.score, c.volunteer.name))


def assess(suited_ones: list[Suited], facts: dict[uuid.UUID, Facts], policy: Policy) -> tuple[list[Candidate], Counter]:
    """The volunteers whose profile suits who may be asked, ranked, and how many of the others the rules on their
    tasks and offers ruled out."""
    excluded: Counter = Counter()
    eligible = []
    for one in suited_ones:
        rule = load_exclusion(one.weekly_cap, one.free_days, facts[one.id])
        if rule is None:
            eligible.append((one, facts[one.id]))
        else:
            excluded[rule] += 1
    return rank(eligible, policy), excluded


def next_batch(request: MatchRequest, candidates: list[Candidate], policy: Policy) -> list[Candidate]:
    """Who to ask next: the best `batch_size` candidates; but for the first round of a recurring request's next
    occurrence, the volunteer who did the previous one alone, if they can."""
    regular = request.previous_volunteer() if request.round == 0 else None
    if regular is not None and any(c.volunteer.id == regular for c in candidates):
        return [c for c in candidates if c.volunteer.id == regular]
    return candidates[:policy.batch_size]


RULE_TEXT = {
    "status": "paused or left",
    "sms": "opted out of SMS",
    "skill": "without the skill",
    "away": "away",
    "availability": "not available then",
    "too_far": "too far",
    "language": "without the language asked for",
    "gender": "not the gender asked for",
    "weekly_cap": "at their weekly limit",
    "already_asked": "already asked",
}


def rule_text(rule: str, rules: CheckRules = DEFAULT_RULES) -> str:
    """A rule's name as a coordinator reads it; a check by the name the community (`rules`) gives it."""
    if rule.startswith("check:"):
        name = rules.name(rule.split(":", 1)[1])
        return f"without {name[:1].lower()}{name[1:]} in date"
    return RULE_TEXT[rule]


def explain(exclusions: Counter, rules: CheckRules = DEFAULT_RULES) -> str:
    """'12 too far, 3 without bereavement-support training in date', largest first; or that nobody is registered."""
    if not exclusions:
        return "no volunteers are registered in this community"
    ordered = sorted(exclusions.items(), key=lambda item: (-item[1], rule_text(item[0], rules)))
    return ", ".join(f"{n} {rule_text(rule, rules)}" for rule, n in ordered)


def why_unmatched(asked: int, excluded: Counter, rules: CheckRules = DEFAULT_RULES) -> str:
    """Why nobody more can be asked: how many were asked, and what ruled out the rest."""
    excluded = Counter({rule: n for rule, n in excluded.items() if rule != "already_asked"})
    prefix = f"{asked} asked, none said yes; of the rest: " if asked else "nobody eligible: "
    return prefix + explain(excluded, rules)


# --- what is plausible --------------------------------------------------------------------------------------------

EARLIEST_CHECK = date(1900, 1, 1)
CHECK_LIFE_YEARS = 10  # a check or training expires at most ten years after it was done
AWAY_WITHIN = timedelta(days=365)  # time away is recorded from a year back to a year ahead


def check_problems(done_on: date, expires_on: date | None, today: date) -> dict[str, str]:
    """What is implausible about a check's dates, by field: it was done by today (and not before 1900), and it
    expires after it was done, within ten years of it."""
    problems = {}
    if done_on > today:
        problems["done_on"] = "Must not be in the future: record a check once it is done."
    elif done_on < EARLIEST_CHECK:
        problems["done_on"] = f"Must not be before {EARLIEST_CHECK.isoformat()}."
    if expires_on is not None and expires_on <= done_on:
        problems["expires_on"] = "Must be after done_on."
    elif expires_on is not None and "done_on" not in problems and expires_on > _years_after(done_on, CHECK_LIFE_YEARS):
        problems["expires_on"] = "Must be at most ten years after done_on."
    return problems


def _years_after(day: date, years: int) -> date:
    """The same day `years` later (29 February becomes the 28th)."""
    return day.replace(year=day.year + years, day=min(day.day, 28) if day.month == 2 else day.day)


def time_away_problems(starts_on: date, ends_on: date, today: date) -> dict[str, str]:
    """What is implausible about time away, by field: it ends on or after the day it starts, starts at most a
    year ago and ends at most a year ahead."""
    problems = {}
    if starts_on < today - AWAY_WITHIN:
        problems["starts_on"] = "Must be at most a year ago."
    if ends_on < starts_on:
        problems["ends_on"] = "Must not be before starts_on."
    elif ends_on > today + AWAY_WITHIN:
        problems["ends_on"] = "Must be at most a year ahead."
    return problems


# --- people applying to volunteer --------------------------------------------------------------------------------

# An applicant moves one stage at a time to approved (then a volunteer in the roster), or leaves at any stage
# before that, withdrawn (their choice) or declined (the coordinator's), with a reason. Until approved an applicant
# is not a volunteer: nothing of theirs is in the volunteers table, so no rule of matching can offer them a task.
APPLICANT_STAGES = ("applied", "contacted", "checks", "training", "approved", "withdrawn", "declined")
STAGE_NAMES = {"applied": "Applied", "contacted": "Contacted", "checks": "Checks in progress", "training": "Training",
               "approved": "Approved", "withdrawn": "Withdrawn", "declined": "Declined"}
NEXT_STAGE = {"applied": "contacted", "contacted": "checks", "checks": "training", "training": "approved"}
LEAVING = ("withdrawn", "declined")  # each needs a reason
APPLICATIONS_PER_HOUR = 10  # from one address; the next is refused


class TooManyApplications(MatchingError):
    """An address sent as many applications as an hour allows."""


@dataclass(eq=False, kw_only=True)
class StageChange:
    """One move of an applicant, who made it and why: the pipeline's audit trail."""

    applicant_id: uuid.UUID
    stage: str
    previous: str | None
    at: datetime
    actor: str
    role: str
    reason: str | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(eq=False, kw_only=True)
class Applicant:
    """Someone who asked to volunteer, on the public page: what they gave, and where they are in the pipeline."""

    community: str
    name: str
    phone: str
    postcode: str
    kinds: list[str]
    language: str = "en"
    stage: str = "applied"
    applied_at: datetime
    stage_since: datetime
    reason: str | None = None
    volunteer_id: uuid.UUID | None = None
    # checks granted by training they attended before approval ({"check", "done_on"}): given when approved
    kept_checks: list[dict[str, str]] = field(default_factory=list)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    history: list[StageChange] = field(default_factory=list, repr=False)

    @property
    def open(self) -> bool:
        """Still in the pipeline (not approved, withdrawn or declined)."""
        return self.stage in NEXT_STAGE

    @property
    def next_stage(self) -> str | None:
        """The stage a coordinator moves them on to; None once they left the pipeline."""
        return NEXT_STAGE.get(self.stage)

    def waited(self, now: datetime) -> timedelta:
        """How long they have been at their stage."""
        return now - self.stage_since

    def waiting_too_long(self, now: datetime, days: int) -> bool:
        """In the pipeline, and at their stage longer than the community allows."""
        return self.open and self.waited(now) > timedelta(days=days)

    def skills(self) -> list[str]:
        """The skills the kinds of help they would like to give need, as a volunteer's profile keeps them."""
        return sorted({KINDS[kind].skill for kind in self.kinds if kind in KINDS and KINDS[kind].offered})

    def move(self, stage: str, now: datetime, actor: str, role: str, reason: str | None = None) -> StageChange:
        """Move to the next stage, or out of the pipeline with a reason; Conflict for any other move."""
        if not self.open:
            raise Conflict(f"This applicant is {STAGE_NAMES[self.stage].lower()} already.")
        if stage in LEAVING:
            if not (reason or "").strip():
                raise ValueError("Say why.")
        elif stage != self.next_stage:
            raise Conflict(f"An applicant who is {STAGE_NAMES[self.stage].lower()} moves on to "
                           f"{STAGE_NAMES[self.next_stage].lower()} next.")
        change = StageChange(applicant_id=self.id, stage=stage, previous=self.stage, at=now, actor=actor, role=role,
                             reason=reason.strip() if stage in LEAVING and reason else None)
        self.stage, self.stage_since, self.reason = stage, now, change.reason
        self.history.append(change)
        return change


# --- training sessions, and who is invited to them ----------------------------------------------------------------

# A session is scheduled by a coordinator: volunteer training (granting a check on attendance, or none) or a public
# session (Future Life Planning, Dying Matters) that members of the public sign up to. Each invitation has a code of
# its own, unique among the open offers and invitations (so YES with one never answers the other), texted with
# the topic, day and place only. An invitation is answered YES (accepted, or on the waiting list once the session
# is full) or NO; attendance is recorded by the coordinator.
INVITATION_STATUSES = ("invited", "accepted", "waiting", "declined")
INVITATION_NAMES = {"invited": "Invited", "accepted": "Accepted", "waiting": "On the waiting list",
                    "declined": "Declined"}
INVITATION_ANSWERS = {"YES": ("invited",), "NO": ("invited", "accepted", "waiting")}  # what each answers
RESERVING = ("invited", "accepted", "waiting")  # an invitation's code stays taken in these, until attended
PUBLIC_TOPICS = {"future_life_planning": "Future Life Planning", "dying_matters": "Dying Matters"}
INVITED_STAGES = ("checks", "training")  # applicants a session may invite


def attendee_digest(phone: str, secret_key: str) -> str:
    """Who attended, as metrics counts them: a keyed digest of their phone (the same person at two sessions is one
    person accessing education), from which the phone cannot be had back."""
    return hmac.new(secret_key.encode(), b"training attendee:" + phone.encode(), hashlib.sha256).hexdigest()


@dataclass(eq=False, kw_only=True)
class Invitation:
    """Someone invited to (or, for a public session, signed up to) a session: a volunteer, an applicant or a member
    of the public (their phone, and their name for the coordinator's page: a member of the public's if given)."""

    session_id: uuid.UUID
    community: str
    phone: str
    code: str
    name: str | None = None
    language: str = "en"
    volunteer_id: uuid.UUID | None = None
    applicant_id: uuid.UUID | None = None
    status: str = "invited"
    invited_at: datetime
    answered_at: datetime | None = None
    attended_on: date | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def who(self) -> str:
        """What the coordinator's page calls them: volunteer, applicant, or member of the public."""
        return "Volunteer" if self.volunteer_id else "Applicant" if self.applicant_id else "Public"


@dataclass(eq=False, kw_only=True)
class TrainingSession:
    """A scheduled session: its topic, when and where (a place, or online), the trainer, how many it takes, the
    check attending grants (or none), and whether it is a public one."""

    community: str
    topic: str
    starts_at: datetime
    trainer: str
    capacity: int
    place: str | None = None
    online: bool = False
    grants: str | None = None  # a key of shared.taxonomy.CHECKS
    public: str | None = None  # a key of PUBLIC_TOPICS: members of the public sign up to it
    code: str | None = None  # a public session's code, for signing up by SMS (YES <code>)
    created_at: datetime
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    invitations: list[Invitation] = field(default_factory=list, repr=False)

    def taken(self) -> int:
        """How many places are taken (accepted, or attended without answering)."""
        return sum(1 for i in self.invitations if i.status == "accepted")

    def full(self) -> bool:
        """Every place is taken."""
        return self.taken() >= self.capacity

    def where(self) -> str:
        """Where it is, as a text says it."""
        return "online" if self.online else (self.place or "")

    def invite(self, phone: str, code: str, now: datetime, **who: Any) -> Invitation:
        """Invite someone (their phone, and who they are), unless they are invited already: ValueError then."""
        if any(i.phone == phone for i in self.invitations):
            raise ValueError("invited already")
        invitation = Invitation(session_id=self.id, community=self.community, phone=phone, code=code, invited_at=now,
                                **who)
        self.invitations.append(invitation)
        return invitation

    def answer(self, invitation: Invitation, yes: bool, now: datetime) -> str:
        """Take a YES or NO: 'accepted', 'full' (on the waiting list), 'declined', or 'unchanged' when it was
        answered that way already. A place freed by a NO goes to nobody by itself: the coordinator invites again."""
        if yes:
            if invitation.status == "accepted":
                return "unchanged"
            invitation.status = "waiting" if self.full() else "accepted"
        else:
            if invitation.status == "declined":
                return "unchanged"
            invitation.status = "declined"
        invitation.answered_at = now
        return {"accepted": "accepted", "waiting": "full", "declined": "declined"}[invitation.status]

    def attended(self, invitation: Invitation, day: date) -> bool:
        """Record that they came (`day`: the session's, in its community); False if it was recorded already."""
        if invitation.attended_on is not None:
            return False
        invitation.attended_on = day
        if invitation.status != "accepted":
            invitation.status = "accepted"
        return True
# --- hours beyond tasks, and volunteers' wellbeing ----------------------------------------------------------------

@dataclass(eq=False)
class Contribution:
    """Hours a volunteer gave outside tasks and visits: a group activity they ran, or training they delivered (as
    metrics' `activity.logged` says; `source_id` is the activity's id). Counted in their hours (HOURS by SMS, their
    page); one per volunteer per activity."""

    volunteer_id: uuid.UUID
    community: str
    source: str
    source_id: uuid.UUID
    kind: str
    held_on: date
    hours: float
    id: uuid.UUID = field(default_factory=uuid.uuid4)


CHECK_IN_ANSWER_DAYS = 14  # a check-in's answer is taken this long after it was asked (notify reads scores as long)
CHECK_IN_IDS = uuid.UUID("2d6f7a1c-94b3-4e0a-8c5d-3b1e6f9a7c20")  # the namespace a check-in's id is made in


def check_in_id(volunteer_id: uuid.UUID, due_on: date) -> uuid.UUID:
    """A check-in's id, made from its volunteer and due date: two timers due the same check-in make the same one."""
    return uuid.uuid5(CHECK_IN_IDS, f"{volunteer_id}:{due_on.isoformat()}")


def next_check_in(registered_on: date, last_due: date | None, interval_days: int) -> date:
    """When a volunteer is next asked how they are finding volunteering: `interval_days` after the last check-in was
    due, or after they registered (a volunteer paused past it is asked once they are active again, once)."""
    return (last_due or registered_on) + timedelta(days=interval_days)


@dataclass(eq=False)
class CheckIn:
    """A wellbeing check-in: an active volunteer asked by SMS how they are finding volunteering, due on a day (one
    per volunteer per due date), and their answer: a score from 1 to 5, or that they asked to talk."""

    volunteer_id: uuid.UUID
    community: str
    due_on: date
    prompted_at: datetime
    id: uuid.UUID | None = None
    answered_at: datetime | None = None
    score: int | None = None
    talk: bool = False

    def is_open(self, now: datetime) -> bool:
        """Still taking an answer: none yet, and asked within CHECK_IN_ANSWER_DAYS."""
        return self.answered_at is None and now - self.prompted_at <= timedelta(days=CHECK_IN_ANSWER_DAYS)

    def answer(self, score: int | None, now: datetime) -> None:
        """Record their score (None: they asked to talk instead)."""
        self.answered_at, self.score, self.talk = now, score, score is None


def is_low(score: int | None, low_score: int) -> bool:
    """A score a coordinator should hear of: at or below the community's `wellbeing_low_score`."""
    return score is not None and score <= low_score
