"""What metrics counts and how: a fact per event, the group activities coordinators log, the measures managers
report for a community and a period (with the period before beside them), and the rules that keep people from
being picked out. Pure: no Flask, no database session, no environment.

Each measure is worked out from the facts and the activities, so it is the same however often an event was
delivered. Small counts are shown as "<5" wherever they leave the service (`suppress`), and where a total and
its other parts would give one away, as many more are "hidden" as it takes (`protect`): within one view, and
between every view a manager can ask for of the same span (`jointly_shown`).
"""

from __future__ import annotations

import re
import statistics
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Callable, Iterable

import numpy as np

from shared import equity
from shared.contracts import Event
from shared.taxonomy import ACTIVITY_LABELS, KINDS, SOURCES
from shared.taxonomy import ORGANISATION_TYPES as ORGANISATION_KINDS

PERIODS = ("day", "week", "month", "quarter", "year")
MAX_PERIODS = 400  # periods one query may ask for
CHARTED = 6  # periods the dashboard charts by default
# The group activities a coordinator logs, each counted on its own, in the words the dashboard uses (shared.taxonomy:
# a volunteer's page in matching names the activities they ran in the same words).
ACTIVITY_KINDS = tuple(ACTIVITY_LABELS)
# The kinds of organisation, as intake's register spells them (shared.taxonomy), for activities' organisers too.
ORGANISATION_TYPES = tuple(ORGANISATION_KINDS)
UNKNOWN_TYPE = "unknown"  # a partner named on a referral or an activity that is not in the register, of no type


class NotYourCommunity(Exception):
    """The actor asked about, or logged for, a community that is not theirs."""


class UnknownFilter(ValueError):
    """A query names a kind of help or a source that shared.taxonomy does not list."""


# --- facts and activities ----------------------------------------------------------------------------------------

@dataclass(eq=False)
class Fact:
    """What one event says that counting needs, keyed by the event, so it is never counted twice.

    Only kinds, sources, communities, dates, hours, and the pseudonymous ids that distinct counts need (the
    person's reference, a volunteer's id, an organisation's name). No names, phones or addresses."""

    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    day: date | None = None  # in the community's time zone
    community: str | None = None
    request_id: uuid.UUID | None = None
    source: str | None = None  # of a request; of a training.attended, the kind of public session (none: training)
    support_type: str | None = None
    person_ref: str | None = None  # of a training.attended, the attendee's keyed digest (of their phone)
    is_carer: bool = False
    volunteer_id: uuid.UUID | None = None
    organisation: str | None = None
    hours: float | None = None
    status: str | None = None  # a volunteer's, when registered or changed
    occurrence: int | None = None  # of a recurring request, for a match, an acceptance or a task (None: the first)
    carers_offered: int | None = None  # of a death: how many of the person's carers were offered bereavement support
    follows_a_death: bool = False  # of a request: a carer's bereavement support taken up after a death
    score: int | None = None  # of a wellbeing check-in's answer: 1 to 5 (None: they asked to talk instead)
    respondent: str | None = None  # of a survey answer: carer, service_user or bereaved (never who)
    question: str | None = None  # of a survey answer: the question's id (ONS4's, or a community's own)
    answer: int | None = None  # of a survey answer: 0 to 10


@dataclass(eq=False)
class Activity:
    """A group activity volunteers ran (a bereavement group, a Death Cafe ...), logged by a coordinator."""

    id: uuid.UUID
    community: str
    kind: str
    held_on: date
    attendance: int
    created_by: str
    created_at: datetime
    organisation: str | None = None
    organisation_type: str | None = None
    volunteer_ids: list[str] = field(default_factory=list)
    volunteer_hours: dict[str, float] = field(default_factory=dict)  # each volunteer's id who gave hours: the hours

    @property
    def hours(self) -> float:
        """The hours volunteers gave to it, all together."""
        return round(sum(self.volunteer_hours.values()), 2)

    def contributions(self) -> list[dict[str, Any]]:
        """Each volunteer who gave hours to it, and their hours (activity.logged's `volunteers`)."""
        return [{"volunteer_id": uuid.UUID(v), "hours": h} for v, h in sorted(self.volunteer_hours.items())]


@dataclass(eq=False)
class HourlyValue:
    """What an hour of a community's volunteer time is worth, as a manager set it, from a day on; every change is
    kept (who set it and when), and a period is valued at the one in effect on its last day."""

    id: uuid.UUID
    community: str
    amount: float
    currency: str
    applies_from: date
    set_by: str
    set_at: datetime


def value_in_effect(changes: Iterable[HourlyValue], community: str, day: date,
                    default: tuple[float, str]) -> tuple[float, str]:
    """A community's hourly value on a day: the change applying from the latest day on or before it (of two from the
    same day, the one set last), else the community's own (communities.json)."""
    applying = [c for c in changes if c.community == community and c.applies_from <= day]
    if not applying:
        return default
    latest = max(applying, key=lambda c: (c.applies_from, c.set_at))
    return latest.amount, latest.currency


CURRENCY_SIGNS = {"GBP": "£", "CAD": "CA$", "USD": "US$", "EUR": "€"}


def money(amount: float, currency: str) -> str:
    """An amount as a funder reads it: "£1,234", "CA$567" (whole units; the currency's code where it has no
    sign)."""
    sign = CURRENCY_SIGNS.get(currency)
    number = f"{round(amount):,}"
    return f"{sign}{number}" if sign else f"{number} {currency}"


def money_text(values: Any) -> str:
    """The value of volunteer time as the tiles and the report say it: one amount per currency ("£1,234", or
    "£1,234 + CA$567" for communities in two countries); "—" when no hours were given."""
    if not isinstance(values, dict) or not values:
        return "—"
    return " + ".join(money(amount, currency) for currency, amount in sorted(values.items()))


@dataclass(eq=False)
class Organisation:
    """An organisation in a community's register, as intake last published it (`organisation.changed`); one
    `merged_into` another is that one under another name."""

    id: uuid.UUID
    community: str
    name: str
    type: str
    adopted_on: date | None = None
    merged_into: uuid.UUID | None = None


@dataclass(eq=False)
class Monitoring:
    """A person's equity monitoring as intake last sent it (`person.monitored`), under their pseudonym: bands,
    groups and the deprivation decile of where they live, all None without their consent."""

    person_ref: str
    community: str
    recorded_at: datetime
    consented: bool = False
    age_band: str | None = None
    sex: str | None = None
    ethnic_group: str | None = None
    first_language: str | None = None
    disability: str | None = None
    deprivation_decile: str | None = None

    def answer(self, dimension: str) -> str:
        """The part of a distribution the person is counted in: their answer, or "not recorded"."""
        return (getattr(self, dimension) if self.consented else None) or equity.NOT_RECORDED


def name_key(name: str) -> str:
    """An organisation's name as it is compared: any case, spacing and punctuation, with "&" as "and" and no leading
    "The" ("St Anne's" and "st annes", "Age UK - Blackpool" and "Age UK Blackpool" are one)."""
    words = re.sub(r"[^\w\s]", "", name.casefold().replace("&", " and ")).split()
    return " ".join(words[1:] if words[:1] == ["the"] and len(words) > 1 else words)


class Register:
    """Every community's organisations, to count partners by organisation: a name on a referral or an activity is
    the registered organisation of that name in its community (or the one it was merged into); a name not in the
    register is a partner of its own, of unknown type, however it is spelled."""

    def __init__(self, organisations: Iterable[Organisation] = ()):
        organisations = list(organisations)
        self.by_id = {o.id: o for o in organisations}
        self.by_name = {(o.community, name_key(o.name)): o for o in organisations}

    def canonical(self, organisation: Organisation) -> Organisation:
        """The organisation a merged one is now part of (itself when it was not merged)."""
        seen = set()
        while organisation.merged_into in self.by_id and organisation.id not in seen:
            seen.add(organisation.id)
            organisation = self.by_id[organisation.merged_into]
        return organisation

    def partner(self, community: str | None, name: str, given_type: str | None = None) -> tuple[str, str]:
        """(who, type) for an organisation named in a community: its register id and type, or its name's key and
        the type given with it (unknown when none)."""
        found = self.by_name.get((community, name_key(name)))
        if found is not None:
            found = self.canonical(found)
            return str(found.id), found.type
        return f"{community}:{name_key(name)}", given_type if given_type in ORGANISATION_KINDS else UNKNOWN_TYPE

    def adopted(self, communities: Iterable[str], by: date) -> int:
        """Providers of these communities that had adopted a compassionate communities approach by `by` (merged
        ones counted once, as the one they are part of)."""
        wanted = set(communities)
        return len({self.canonical(o).id for o in self.by_id.values() if o.community in wanted
                    and o.adopted_on is not None and o.adopted_on <= by})


# The fields the measures read from each event they count. These are read without a guard, so a contract that
# stops declaring one fails (tests/unit/test_metrics_service_layer.py); other events' fields are kept where
# their contract declares them.
COUNTED_FIELDS: dict[str, frozenset[str]] = {
    "request.submitted": frozenset({"community", "request_id", "source", "support_type", "person_ref", "is_carer",
                                    "referrer_organisation", "follows_a_death"}),
    "request.updated": frozenset({"request_id", "support_type"}),
    "training.attended": frozenset({"community", "public", "attendee"}),
    "request.matched": frozenset({"request_id", "volunteer_id", "occurrence"}),
    "request.unmatched": frozenset({"request_id"}),
    "request.cancelled": frozenset({"request_id"}),
    "request.signposted": frozenset({"community", "request_id", "support_type"}),
    "offer.accepted": frozenset({"community", "request_id", "volunteer_id", "occurrence"}),
    "task.completed": frozenset({"community", "request_id", "volunteer_id", "support_type", "hours", "occurrence"}),
    "volunteer.registered": frozenset({"community", "volunteer_id", "status"}),
    "volunteer.status_changed": frozenset({"community", "volunteer_id", "status"}),
    "befriending.started": frozenset({"community", "request_id", "volunteer_id", "support_type"}),
    "befriending.visit_logged": frozenset({"community", "request_id", "volunteer_id", "support_type", "hours"}),
    "befriending.ended": frozenset({"community", "request_id", "support_type"}),
    "person.died": frozenset({"community", "person_ref", "carers_offered"}),
    "concern.opened": frozenset({"community", "support_type"}),
    "concern.closed": frozenset({"community", "support_type"}),
    "wellbeing.prompted": frozenset({"community"}),
    "wellbeing.answered": frozenset({"community", "score"}),
    "survey.answer_recorded": frozenset({"community", "respondent", "question_id", "answer"}),
}


def fact_of(event: Event) -> Fact:
    """The fact an event makes (without its day, which needs its community's time zone): what counting needs of
    it, and nothing that names anyone."""
    payload = event.payload
    declared = type(payload).field_names()
    counted = COUNTED_FIELDS.get(event.type, frozenset())

    def read(name: str) -> Any:
        return getattr(payload, name) if name in counted or name in declared else None

    return Fact(
        event_id=event.event_id, event_type=event.type, occurred_at=event.occurred_at, community=read("community"),
        request_id=read("request_id"), source=read("source") or read("public"), support_type=read("support_type"),
        person_ref=read("person_ref") or read("attendee") or None, is_carer=bool(read("is_carer")),
        volunteer_id=read("volunteer_id"),
        organisation=read("referrer_organisation"), hours=read("hours"),
        status=read("status") if event.type.startswith("volunteer.") else None, occurrence=read("occurrence"),
        carers_offered=read("carers_offered"),
        follows_a_death=bool(read("follows_a_death")) and not read("closed"),
        score=read("score") if event.type == "wellbeing.answered" else None,
        **({"respondent": read("respondent"), "question": read("question_id"), "answer": read("answer")}
           if event.type == "survey.answer_recorded" else {}))  # other events' "answer" is no survey's


def local_day(moment: datetime, zone: tzinfo | None) -> date:
    """The day a moment falls on in a community's time zone (in UTC when the community is unknown)."""
    return (moment.astimezone(zone) if zone else moment).date()


def has_happened(day: date, today: date) -> bool:
    """An activity is logged once it has happened (a day's grace for time zones)."""
    return day <= today + timedelta(days=1)


LOGGED_WITHIN = timedelta(days=366)  # an activity is logged within a year of it


def activity_day_problem(day: date, today: date) -> str | None:
    """What is implausible about the day of an activity: it has happened, at most a year ago."""
    if not has_happened(day, today):
        return "Log an activity once it has happened."
    if day < today - LOGGED_WITHIN:
        return "Must be at most a year ago."
    return None


@dataclass(eq=False)
class Baseline:
    """The period a community compares itself with, as its manager chose it: the period of any length (a month, a
    quarter ...) that `starts_on` falls in, so a month is compared with the baseline's month and a year with its
    year."""

    community: str
    starts_on: date
    set_by: str
    set_at: datetime

    def span(self, period: str) -> tuple[date, date]:
        """The baseline's period of this length: the one `starts_on` falls in."""
        return period_of(period, self.starts_on)


BASELINE_WITHIN = timedelta(days=10 * 366)  # a baseline is at most ten years back


def baseline_day_problem(day: date, today: date) -> str | None:
    """What is wrong with a baseline's day: it is in the past (a baseline is counted, not forecast), at most ten
    years ago."""
    if day > today:
        return "Must be a day that has happened: a baseline is a period already counted."
    if day < today - BASELINE_WITHIN:
        return "Must be at most ten years ago."
    return None


# --- who sees what ------------------------------------------------------------------------------------------------

def communities_asked(mine: Iterable[str], community: str | None) -> list[str]:
    """The communities a query asks about: all of the actor's, or the one named, which must be theirs."""
    mine = list(mine)
    if community is None:
        return mine
    if community not in mine:
        raise NotYourCommunity("You may see only your own communities' counts.")
    return [community]


def communities_shown(mine: Iterable[str], community: str | None) -> list[str]:
    """The communities a page shows: the one named if it is one of the actor's, else all of theirs."""
    mine = list(mine)
    return [community] if community in mine else mine


def community_to_log(mine: Iterable[str], community: str | None, what: str = "log activities") -> str:
    """Where an activity is logged (or a baseline set): the community named (it must be the actor's), else their
    first."""
    mine = list(mine)
    chosen = community or (mine[0] if mine else None)
    if chosen is None or chosen not in mine:
        raise NotYourCommunity(f"You may {what} only for your own communities.")
    return chosen


# --- periods ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    """What a query narrows the counts to: a community, a range of days, a kind of help, a source."""

    community: str | None = None
    start: date | None = None
    end: date | None = None
    kind: str | None = None
    source: str | None = None  # as intake spells it: one of shared.taxonomy.SOURCES

    def __post_init__(self):
        """Only kinds of help and sources that shared.taxonomy lists (UnknownFilter otherwise)."""
        if self.kind is not None and self.kind not in KINDS:
            raise UnknownFilter(f"There is no kind of help {self.kind!r}.")
        if self.source is not None and self.source not in SOURCES:
            raise UnknownFilter(f"There is no source {self.source!r}; sources are {', '.join(SOURCES)}.")


def period_of(period: str, day: date) -> tuple[date, date]:
    """The first and last day of the period `day` falls in."""
    if period == "day":
        return day, day
    if period == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=6)
    if period == "month":
        first = day.replace(day=1)
    elif period == "quarter":
        first = day.replace(month=3 * ((day.month - 1) // 3) + 1, day=1)
    else:
        first = day.replace(month=1, day=1)
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    month = first.month - 1 + months
    after = first.replace(year=first.year + month // 12, month=month % 12 + 1)
    return first, after - timedelta(days=1)


def periods_between(period: str, start: date, end: date) -> list[tuple[date, date]]:
    """Every period from the one `start` falls in to the one `end` falls in."""
    found, day = [], start
    while day <= end:
        first, last = period_of(period, day)
        found.append((first, last))
        day = last + timedelta(days=1)
    return found


def previous(period: str, first: date) -> tuple[date, date]:
    """The period before the one starting on `first`."""
    return period_of(period, first - timedelta(days=1))


def spans(period: str, start: date, end: date) -> list[tuple[date, date]]:
    """The periods from `start` to `end`, after the one before them: each period's "before" is the one listed
    ahead of it, so every period is counted once."""
    return [previous(period, period_of(period, start)[0]), *periods_between(period, start, end)]


def a_year_before(period: str, end: date) -> date:
    """Where the counts start by default: the start of the period a year before `end`."""
    return period_of(period, end - timedelta(days=365))[0]


def charted_from(period: str, end: date, periods: int = CHARTED) -> date:
    """Where the dashboard starts by default: `periods` periods up to the one `end` falls in."""
    start = end
    for _ in range(periods - 1):
        start = previous(period, period_of(period, start)[0])[0]
    return start


def last_whole(period: str, today: date) -> date:
    """The first day of the last whole period before today's: what a funder asks about."""
    return previous(period, period_of(period, today)[0])[0]


# --- the measures -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measure:
    """One measure a manager reports: its key in the counts, and its label on the pages and in the CSV."""

    key: str
    label: str
    is_count: bool = True  # counts are suppressed when small; hours and times are not


MEASURES = (
    Measure("requests_received", "Requests received"),
    Measure("requests_matched", "Requests matched"),
    Measure("match_rate", "Match rate (% of requests received with an outcome)", is_count=False),
    Measure("occurrences_matched", "Later occurrences of recurring requests matched"),
    Measure("requests_rematched", "Tasks matched again after a volunteer gave one back"),
    Measure("requests_unmatched", "Requests unmatched"),
    Measure("requests_cancelled", "Requests cancelled"),
    Measure("requests_signposted", "Requests signposted to other support"),
    Measure("tasks_completed", "Tasks completed"),
    Measure("volunteer_hours", "Volunteer hours", is_count=False),
    Measure("volunteer_time_value", "Value of volunteer time", is_count=False),
    Measure("volunteers_registered", "Volunteers registered (at the end of the period)"),
    Measure("new_volunteers", "New volunteers"),
    Measure("volunteers_paused", "Volunteers who paused"),
    Measure("volunteers_left", "Volunteers who left"),
    Measure("active_volunteers", "Active volunteers"),
    Measure("people_reached", "People supported"),
    Measure("carers_supported", "Carers supported"),
    Measure("bereavement_supports", "Bereavement supports given"),
    Measure("deaths_recorded", "Deaths recorded of people supported"),
    Measure("bereavement_offered", "Carers offered bereavement support after a death"),
    Measure("bereavement_taken_up", "Carers who took up bereavement support after a death"),
    Measure("future_planning_reached", "People at future-life-planning education"),
    Measure("education_reached", "People accessing education (each once, at public sessions)"),
    Measure("group_activities", "Group activities"),
    Measure("group_attendance", "People at group activities"),
    Measure("active_partners", "Active partner organisations"),
    Measure("providers_adopting", "Providers adopting the approach (by the period's end)"),
    Measure("concerns_raised", "Concerns raised by volunteers"),
    Measure("concerns_closed", "Concerns closed by coordinators"),
    Measure("hours_to_acceptance_median", "Hours from request to acceptance (median)", is_count=False),
    Measure("hours_to_acceptance_p90", "Hours from request to acceptance (90th percentile)", is_count=False),
    Measure("befriending_started", "Befriending matches started"),
    Measure("befriending_ended", "Befriending matches ended"),
    Measure("befriending_visits", "Befriending visits"),
    Measure("wellbeing_prompted", "Wellbeing check-ins sent to volunteers"),
    Measure("wellbeing_answered", "Wellbeing check-ins answered with a score"),
    Measure("wellbeing_talk", "Volunteers who asked to talk at a check-in"),
    Measure("carer_survey_answers", "Survey answers from carers"),
    Measure("user_survey_answers", "Survey answers from service users and the bereaved"),
)
BREAKDOWNS = (("requests_by_source", "Requests received from"), ("requests_by_kind", "Requests received for"),
              ("tasks_by_kind", "Tasks completed for"), ("signposted_by_kind", "Requests signposted for"),
              ("activities_by_kind", "Group activities:"), ("attendance_by_kind", "People at group activities:"),
              ("partners_by_type", "Active partners:"), ("wellbeing_scores", "Wellbeing check-ins scored"),
              ("survey_responses", "Survey answers by question:"), ("survey_answers", "Survey answers by band:"),
              ("survey_means", "Survey mean answer (0 to 10):"))
# Reach and equity: the people supported (people_reached) by each monitoring answer (shared/equity.py), each a
# breakdown that adds up to them. They leave the service beside the measures, as a period's "equity".
EQUITY_KEYS = {f"people_by_{dimension}": dimension for dimension, _ in equity.DIMENSIONS}
EQUITY_LABELS = {f"people_by_{dimension}": f"People supported by {label[0].lower()}{label[1:]}:"
                 for dimension, label in equity.DIMENSIONS}

# A request's facts that say what it is and how it went, on any day: what the definitions below look back on.
REQUEST_HISTORY = ("request.submitted", "request.updated", "request.matched", "request.unmatched", "offer.accepted",
                   "task.completed")


def kinds_now(facts: Iterable[Fact]) -> dict[uuid.UUID, str]:
    """The kind of help each request has now: as submitted, or as a coordinator last corrected it."""
    kinds: dict[uuid.UUID, str] = {}
    for fact in sorted((f for f in facts if f.event_type in ("request.submitted", "request.updated")),
                       key=lambda f: f.occurred_at):
        kinds[fact.request_id] = fact.support_type
    return kinds


def requests_of(facts: Iterable[Fact], kinds: dict[uuid.UUID, str], kind: str | None = None,
                source: str | None = None) -> list[Fact]:
    """The requests among the facts (their submissions) of this kind now and from this source (None: any)."""
    return [f for f in facts if f.event_type == "request.submitted"
            and (kind is None or kinds.get(f.request_id, f.support_type) == kind)
            and (source is None or f.source == source)]


def _firsts(history: Iterable[Fact], event_type: str, per_occurrence: bool) -> dict[Any, Fact]:
    """The earliest fact of a type for each request (or each occurrence of each request)."""
    firsts: dict[Any, Fact] = {}
    for fact in sorted((f for f in history if f.event_type == event_type), key=lambda f: f.occurred_at):
        firsts.setdefault((fact.request_id, fact.occurrence or 1) if per_occurrence else fact.request_id, fact)
    return firsts


def is_first(fact: Fact, firsts: dict[Any, Fact], per_occurrence: bool) -> bool:
    """The fact is the earliest of its kind for its request (or occurrence)."""
    key = (fact.request_id, fact.occurrence or 1) if per_occurrence else fact.request_id
    return key in firsts and firsts[key].event_id == fact.event_id


def hours_to_acceptance(accepted: Iterable[Fact], history: Iterable[Fact]) -> list[float]:
    """For each occurrence first accepted among `accepted`, the hours from when it became due to that acceptance.

    The first occurrence is due when the request was logged; a later one when the one before it was done (matching
    offers it then). Acceptances after a volunteer gave the task back are not waits."""
    history = list(history)
    first_accepted = _firsts(history, "offer.accepted", per_occurrence=True)
    logged = {rid: f.occurred_at for rid, f in _firsts(history, "request.submitted", per_occurrence=False).items()}
    done = {key: f.occurred_at for key, f in _firsts(history, "task.completed", per_occurrence=True).items()}
    waits = []
    for fact in accepted:
        occurrence = fact.occurrence or 1
        if not is_first(fact, first_accepted, per_occurrence=True):
            continue
        due = logged.get(fact.request_id) if occurrence == 1 else done.get((fact.request_id, occurrence - 1))
        if due is not None:
            waits.append(max(0.0, (fact.occurred_at - due).total_seconds() / 3600))
    return waits


def by_source(requests: Iterable[Fact]) -> dict[str, int]:
    """Requests per source, in the order of the taxonomy's sources (a request without one came from a
    coordinator); a source the taxonomy does not list is counted after them."""
    counted = Counter(f.source or "coordinator" for f in requests)
    return {source: counted[source] for source in (*SOURCES, *sorted(set(counted) - set(SOURCES)))
            if counted[source]}


def _percentile(values: list[float], fraction: float) -> float | None:
    """The value `fraction` of the way up the values (None when there are none), to two places."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return round(ordered[0], 2)
    return round(statistics.quantiles(ordered, n=100, method="inclusive")[int(fraction * 100) - 1], 2)


# --- surveys by SMS: answers 0 to 10, as distributions in bands and means ------------------------------------------

RESPONDENT_WORDS = {"carer": "Carers", "service_user": "Service users", "bereaved": "Bereaved people"}
USERS = ("service_user", "bereaved")  # seed 003's "survey of service users and bereaved people"; carers: wellbeing
QUESTION_WORDS = {"ons4_life_satisfaction": "life satisfaction", "ons4_worthwhile": "things done are worthwhile",
                  "ons4_happiness": "happy yesterday", "ons4_anxiety": "anxious yesterday"}
# The ONS's own thresholds for its personal wellbeing questions (for anxiety, a low answer is the good one); a
# community's own questions are banded as the first three.
BANDS = ((0, 4, "0-4"), (5, 6, "5-6"), (7, 8, "7-8"), (9, 10, "9-10"))
ANXIETY_BANDS = ((0, 1, "0-1"), (2, 3, "2-3"), (4, 5, "4-5"), (6, 10, "6-10"))
NOT_SHOWN = "not shown"


def survey_question_name(respondent: str, question: str) -> str:
    """A survey question as the tables name it: who answered, and the question ("Carers: life satisfaction")."""
    words = QUESTION_WORDS.get(question, f"own question {question.removeprefix('own_')}")
    return f"{RESPONDENT_WORDS.get(respondent, respondent)}: {words}"


def band_of(question: str, answer: int) -> str:
    """The band an answer falls in (ONS's thresholds)."""
    return next(name for low, high, name in (ANXIETY_BANDS if question == "ons4_anxiety" else BANDS)
                if low <= answer <= high)


def survey_tables(answers: Iterable[Fact]) -> dict[str, dict[str, Any]]:
    """Survey answers counted: by respondent and question, the answers (`survey_responses`), their distribution in
    bands (`survey_answers`, only the bands answered) and their mean (`survey_means`, one decimal)."""
    by_question: dict[str, list[int]] = {}
    bands: Counter = Counter()
    for fact in sorted(answers, key=lambda f: (f.respondent or "", f.question or "")):
        name = survey_question_name(fact.respondent, fact.question)
        by_question.setdefault(name, []).append(fact.answer)
        bands[f"{name}: {band_of(fact.question, fact.answer)}"] += 1
    return {"survey_responses": {name: len(values) for name, values in by_question.items()},
            "survey_answers": dict(sorted(bands.items())),
            "survey_means": {name: round(statistics.fmean(values), 1) for name, values in by_question.items()}}


def measures(facts: list[Fact], activities: list[Activity], *, volunteer_changes: list[Fact],
             history: list[Fact], kept: set[uuid.UUID] | None = None, kind: str | None = None,
             source: str | None = None, register: Register | None = None,
             communities: Iterable[str] = (), end: date | None = None,
             hourly_values: dict[str, tuple[float, str]] | None = None,
             monitoring: dict[str, Monitoring] | None = None) -> dict[str, Any]:
    """Every measure of one span, unsuppressed (each one's definition is in the README's "What the counts mean").

    `facts` and `activities` are the span's; `volunteer_changes` every volunteer's registration and status change
    up to the span's end, oldest first; `history` the REQUEST_HISTORY facts, on any day, of the requests the
    span's facts are about. With a kind or source asked for, outcomes count only for the requests in `kept` (those
    of that kind now, or from that source). `hourly_values` is each community's (amount, currency) for the span:
    the value of volunteer time is its hours (tasks, visits and group activities) at its community's value.
    `monitoring`: the equity monitoring of the people among them, by their
    reference (EQUITY: the people supported by each answer, "not recorded" for those without)."""
    kinds = kinds_now(history)
    requests = requests_of(facts, kinds, kind, source)

    of_type: dict[str, list[Fact]] = defaultdict(list)  # the facts counted, by type, read once
    for fact in facts:
        if kept is None or fact.request_id in kept:
            of_type[fact.event_type].append(fact)

    def of(event_type: str) -> list[Fact]:
        return list(of_type.get(event_type, ()))

    def kind_of(fact: Fact) -> str:
        return kinds.get(fact.request_id, fact.support_type)

    visits = [f for f in of("befriending.visit_logged") if kind is None or kind_of(f) == kind]
    # a befriending visit is a task done too (its hours are volunteer hours, its kind counts as the request's)
    completed = [f for f in of("task.completed") + visits if kind is None or kind_of(f) == kind]
    signposted = list({f.request_id: f for f in of("request.signposted")
                       if kind is None or kind_of(f) == kind}.values())  # once each, however often heard
    volunteers = {f.volunteer_id for f in of("offer.accepted") + completed if f.volunteer_id}
    volunteers |= {uuid.UUID(v) for a in activities for v in a.volunteer_ids}
    bereavement = [f for f in completed if KINDS[kind_of(f)].category == "bereavement"]
    planning = [f for f in completed if KINDS[kind_of(f)].category == "future_planning"]
    planning_attendance = sum(a.attendance for a in activities if a.kind == "future_planning_session")
    first_match = _firsts(history, "request.matched", per_occurrence=False)
    submitted = {f.request_id: f for f in history if f.event_type == "request.submitted"}
    hours_of: Counter = Counter()  # each community's volunteer hours: tasks and visits, then group activities
    for f in completed:
        hours_of[f.community or getattr(submitted.get(f.request_id), "community", None)] += f.hours or 0
    for a in activities if kind is None and source is None else ():  # hours given to no request's kind or source
        hours_of[a.community] += a.hours
    value: Counter = Counter()
    for community, hours in hours_of.items():
        if hours and community in (hourly_values or {}):
            amount, currency = hourly_values[community]
            value[currency] += hours * amount
    answers = of("wellbeing.answered")
    first_match_of_occurrence = _firsts(history, "request.matched", per_occurrence=True)
    matches = of("request.matched")
    first_unmatched = _firsts(history, "request.unmatched", per_occurrence=False)
    waits = hours_to_acceptance(of("offer.accepted"), history)
    standing: dict = {}
    for change in volunteer_changes:
        standing[change.volunteer_id] = change.status
    changes = of("volunteer.status_changed")
    outcomes = {f.request_id: f.event_type == "request.matched" for f in sorted(
        (f for f in history if f.event_type in ("request.matched", "request.unmatched")),
        key=lambda f: f.event_type == "request.matched")}  # matched if ever matched
    decided = [outcomes[f.request_id] for f in requests if f.request_id in outcomes]
    # People supported: those whose request had help in the span (a task done, a visit, a signposting outcome),
    # each once, by the pseudonymous reference their request was submitted with.
    helped = {submitted[f.request_id] for f in completed + signposted if f.request_id in submitted}
    register = register or Register()
    partners = dict([register.partner(f.community, f.organisation) for f in requests if f.organisation]
                    + [register.partner(a.community, a.organisation, a.organisation_type) for a in activities
                       if a.organisation])

    survey_answers = of("survey.answer_recorded")
    surveys = survey_tables(survey_answers)
    supported = {f.person_ref for f in helped if f.person_ref}
    monitoring = monitoring or {}

    def distribution(dimension: str) -> dict[str, int]:  # the people supported, by their answer
        answers = Counter(monitoring[ref].answer(dimension) if ref in monitoring else equity.NOT_RECORDED
                          for ref in supported)
        return dict(sorted(answers.items()))

    def concerns(event_type: str) -> int:  # each concern's event once (its id is the fact's); by its request's kind
        return sum(1 for f in facts if f.event_type == event_type and (kind is None or f.support_type == kind))

    return {
        "requests_received": len(requests),
        "requests_matched": sum(is_first(f, first_match, per_occurrence=False) for f in matches),
        "match_rate": (sum(decided), len(decided)),  # a percentage once shown (match_rate())
        "occurrences_matched": sum((f.occurrence or 1) > 1 and is_first(f, first_match_of_occurrence, True)
                                   for f in matches),
        "requests_rematched": sum(not is_first(f, first_match_of_occurrence, True) for f in matches),
        "requests_unmatched": sum(is_first(f, first_unmatched, False) for f in of("request.unmatched")),
        "requests_cancelled": len({f.request_id for f in of("request.cancelled")}),
        "requests_signposted": len(signposted),
        "tasks_completed": len(completed),
        "volunteer_hours": round(sum(hours_of.values()), 2),
        "volunteer_time_value": {currency: round(float(amount), 2) for currency, amount in sorted(value.items())},
        "volunteers_registered": sum(1 for status in standing.values() if status != "left"),
        "new_volunteers": len(of("volunteer.registered")),
        "volunteers_paused": len({f.volunteer_id for f in changes if f.status == "paused"}),
        "volunteers_left": len({f.volunteer_id for f in changes if f.status == "left"}),
        "active_volunteers": len(volunteers),
        "people_reached": len({f.person_ref for f in helped if f.person_ref}),
        "carers_supported": len({f.person_ref for f in helped if f.person_ref and f.is_carer}),
        "bereavement_supports": len(bereavement),
        "deaths_recorded": len({f.person_ref for f in of("person.died") if f.person_ref}),
        "bereavement_offered": sum(f.carers_offered or 0 for f in of("person.died")),
        "bereavement_taken_up": len({f.request_id for f in requests if f.follows_a_death}),
        "future_planning_reached": len(planning) + planning_attendance,
        # people at public sessions (Future Life Planning, Dying Matters), each once however many they attended
        "education_reached": len({f.person_ref for f in of("training.attended") if f.source and f.person_ref}),
        "group_activities": len(activities),
        "group_attendance": sum(a.attendance for a in activities),
        "active_partners": len(partners),
        "providers_adopting": register.adopted(communities, end) if end else 0,
        "concerns_raised": concerns("concern.opened"),
        "concerns_closed": concerns("concern.closed"),
        "hours_to_acceptance_median": _percentile(waits, 0.5),
        "hours_to_acceptance_p90": _percentile(waits, 0.9),
        "befriending_started": sum(1 for f in of("befriending.started") if kind is None or kind_of(f) == kind),
        "befriending_ended": sum(1 for f in of("befriending.ended") if kind is None or kind_of(f) == kind),
        "befriending_visits": len(visits),
        "wellbeing_prompted": len(of("wellbeing.prompted")),
        "wellbeing_answered": sum(1 for f in answers if f.score is not None),
        "wellbeing_talk": sum(1 for f in answers if f.score is None),
        "requests_by_source": by_source(requests),
        "requests_by_kind": dict(sorted(Counter(kind_of(f) for f in requests).items())),
        "tasks_by_kind": dict(sorted(Counter(kind_of(f) for f in completed).items())),
        "signposted_by_kind": dict(sorted(Counter(kind_of(f) for f in signposted).items())),
        "activities_by_kind": {k: n for k in ACTIVITY_KINDS if (n := sum(a.kind == k for a in activities))},
        "attendance_by_kind": {k: sum(a.attendance for a in activities if a.kind == k) for k in ACTIVITY_KINDS
                               if any(a.kind == k for a in activities)},
        "partners_by_type": dict(sorted(Counter(partners.values()).items())),
        "wellbeing_scores": {str(n): count for n in range(1, 6)
                             if (count := sum(1 for f in answers if f.score == n))},
        "carer_survey_answers": sum(f.respondent == "carer" for f in survey_answers),
        "user_survey_answers": sum(f.respondent in USERS for f in survey_answers),
        **surveys,
        **{key: distribution(dimension) for key, dimension in EQUITY_KEYS.items()},
    }


def match_rate(matched: int, decided: int, below: int) -> int | str | None:
    """Of the requests received that have had an outcome (matched, or no volunteer found), the percentage matched:
    None when none has, and "not shown" when the matched, the decided or the unmatched among them is a small count
    (1 to `below` minus one), which the rate and the other counts would give away."""
    if not decided:
        return None
    if any(0 < n < below for n in (matched, decided, decided - matched)):
        return "not shown"
    return round(100 * matched / decided)


def duration_words(hours: float | None) -> str:
    """A time as a person writes it: "40 minutes", "3 hours 20 minutes", "2 days 4 hours" ("—" for none)."""
    if hours is None:
        return "—"
    minutes = round(hours * 60)
    if minutes < 1:
        return "under a minute"

    def unit(n: int, name: str) -> str:
        return f"{n} {name}{'' if n == 1 else 's'}"

    if minutes < 60:
        return unit(minutes, "minute")
    if minutes < 48 * 60:
        whole, rest = divmod(minutes, 60)
        return unit(whole, "hour") + (f" {unit(rest, 'minute')}" if rest else "")
    days, rest = divmod(round(minutes / 60), 24)
    return unit(days, "day") + (f" {unit(rest, 'hour')}" if rest else "")


def so_far(first: date, last: date, today: date) -> str | None:
    """A period only partly over, as the dashboard marks it ("so far: 7 of 31 days"); None for one that is over or
    has not begun."""
    if not first <= today < last:
        return None
    return f"so far: {(today - first).days + 1} of {(last - first).days + 1} days"


# --- what may leave the service ------------------------------------------------------------------------------------

HIDDEN = "hidden"  # a count not shown so that a small one cannot be worked out from a total and its other parts


def suppress(value: Any, below: int, is_count: bool = True) -> Any:
    """A small count (from 1 to `below` minus one) as "<5", so no one can be picked out; zero and larger counts,
    hours and times as they are."""
    if is_count and isinstance(value, int) and 0 < value < below:
        return f"<{below}"
    return value


# Sums a reader can check in every published table, as (cell, +1/-1) terms adding up to zero. A cell is a measure
# ("requests_received") or a part of a breakdown (("tasks_by_kind", "shopping")).
Cell = Any
Equation = list[tuple[Cell, int]]


def equations(values: dict[str, Any]) -> list[Equation]:
    """The sums a table's measures obey: each breakdown of requests adds up to the requests received (or signposted);
    the kinds of bereavement support completed add up to the bereavement supports given, and the other kinds to the
    rest of the tasks completed; the group activities of each kind add up to the group activities, and their
    attendance to the people at group activities; each reach and equity distribution to the people supported."""
    found: list[Equation] = []
    if "requests_received" in values:
        for breakdown in ("requests_by_source", "requests_by_kind"):
            if breakdown in values:
                found.append([("requests_received", -1)] + [((breakdown, p), 1) for p in values[breakdown]])
    if "requests_signposted" in values and "signposted_by_kind" in values:
        found.append([("requests_signposted", -1)]
                     + [(("signposted_by_kind", p), 1) for p in values["signposted_by_kind"]])
    tasks = values.get("tasks_by_kind")
    if tasks is not None and {"tasks_completed", "bereavement_supports"} <= set(values):
        grief = [p for p in tasks if p in KINDS and KINDS[p].category == "bereavement"]
        found.append([("bereavement_supports", -1)] + [(("tasks_by_kind", p), 1) for p in grief])
        found.append([("tasks_completed", -1), ("bereavement_supports", 1)]
                     + [(("tasks_by_kind", p), 1) for p in tasks if p not in grief])
    for total, breakdown in (("group_activities", "activities_by_kind"), ("group_attendance", "attendance_by_kind"),
                             ("active_partners", "partners_by_type"), ("wellbeing_answered", "wellbeing_scores"),
                             *(("people_reached", key) for key in EQUITY_KEYS)):
        if total in values and breakdown in values:
            found.append([(total, -1)] + [((breakdown, p), 1) for p in values[breakdown]])
    responses = values.get("survey_responses")
    if responses is not None:  # each question's answers by band add up to its answers; those, to who answered
        for total, who in (("carer_survey_answers", ("Carers",)),
                           ("user_survey_answers", tuple(RESPONDENT_WORDS[r] for r in USERS))):
            if total in values:
                found.append([(total, -1)] + [(("survey_responses", q), 1) for q in responses
                                              if q.split(":")[0] in who])
        for question in responses:
            found.append([(("survey_responses", question), -1)]
                         + [(("survey_answers", p), 1) for p in values.get("survey_answers", {})
                            if p.rsplit(": ", 1)[0] == question])
    return found


def published_bounds(value: Any, below: int, is_part: bool = False) -> tuple[float, float]:
    """What a reader knows of a cell from what it shows: "<5" is 1 to 4, "hidden" any count (at least 1 for a part
    of a breakdown, which lists only what happened), a number itself."""
    if value == HIDDEN:
        return (1 if is_part else 0), float("inf")
    if isinstance(value, str):
        return 1, below - 1
    return value, value


def _is_part(parts: set[Cell] | None) -> Callable[[Cell], bool]:
    """Whether a reader knows a cell is at least 1 when it is hidden: those named in `parts` (in views protected
    together, every cell but the rests: a 0 is never hidden), else, as one table's cells are keyed, each
    (breakdown, part) (a breakdown lists only what happened)."""
    return (lambda cell: isinstance(cell, tuple)) if parts is None else parts.__contains__


def narrowed(cells: dict[Cell, Any], sums: list[Equation], below: int,
             parts: set[Cell] | None = None) -> dict[Cell, tuple[float, float]]:
    """Each cell's range as a reader can work it out from what is shown and the sums: the bounds of every hidden
    cell tightened by every equation in turn until none moves (within one table the sums share at most a total
    between them, so this finds exactly what a reader could)."""
    is_part = _is_part(parts)
    inf = float("inf")
    bounds = {cell: published_bounds(value, below, is_part(cell)) for cell, value in cells.items()}
    moved = True
    while moved:
        moved = False
        for equation in sums:
            # each term's range (sign * cell), their sums, and how many of them are unbounded below or above
            terms = [(cell, sign, *(bounds[cell] if sign > 0 else (-bounds[cell][1], -bounds[cell][0])))
                     for cell, sign in equation]
            low = sum(lo for *_, lo, _ in terms if lo != -inf)
            high = sum(hi for *_, hi in terms if hi != inf)
            low_open = sum(lo == -inf for *_, lo, _ in terms)
            high_open = sum(hi == inf for *_, hi in terms)
            for cell, sign, lo, hi in terms:
                # sign * cell = -(the sum of the others): its range from the others' ranges
                others_low = -inf if low_open - (lo == -inf) else low - (0 if lo == -inf else lo)
                others_high = inf if high_open - (hi == inf) else high - (0 if hi == inf else hi)
                found = (-others_high, -others_low) if sign > 0 else (others_low, others_high)
                was = bounds[cell]
                tightened = (max(was[0], found[0]), min(was[1], found[1]))
                if tightened != was and tightened[0] <= tightened[1]:
                    bounds[cell] = tightened
                    moved = True
    return bounds


def determined(cells: dict[Cell, Any], sums: list[Equation]) -> set[Cell]:
    """The cells not shown as numbers that the sums fix whatever their bounds: those that no change of the unknown
    cells keeping every sum can move (exact linear reasoning, which bounds alone miss where three sums make a cycle:
    one source's requests, one community's and one kind's, each of two cells, give all three away)."""
    unknown = [cell for cell, value in cells.items() if isinstance(value, str)]
    index = {cell: n for n, cell in enumerate(unknown)}
    rows = [equation for equation in sums if any(cell in index for cell, _ in equation)]
    if not rows:
        return set()
    matrix = np.zeros((len(rows), len(unknown)))
    for r, equation in enumerate(rows):
        for cell, sign in equation:
            if cell in index:
                matrix[r, index[cell]] += sign
    _, singular, directions = np.linalg.svd(matrix)
    free = directions[int((singular > 1e-9).sum()):]  # the changes that keep every sum
    return {cell for cell in unknown if not np.any(np.abs(free[:, index[cell]]) > 1e-9)}


def protect(cells: dict[Cell, Any], sums: list[Equation], below: int,
            parts: set[Cell] | None = None, tried: bool = True) -> dict[Cell, Any]:
    """Secondary suppression: while a reader could work out a suppressed count exactly from the sums, hide one more
    cell of a sum that pins a cell down: the one that leaves fewest counts exposed (unless `tried` is False, as for
    views protected together, where trying each would take seconds a span: then the first in this order),
    preferring the smallest part shown, then a total shown, then a "<5" (as "hidden", which says less). Each round
    hides one more cell, so it ends; with every cell of those sums hidden nothing can be pinned down. `parts`: the
    cells a reader knows are at least 1 when hidden (`_is_part`)."""
    cells = dict(cells)
    is_part = _is_part(parts)
    small = {cell for cell, value in cells.items() if isinstance(value, str) and value != HIDDEN}
    if not small:
        return cells

    def pinned(trial: dict[Cell, Any]) -> set[Cell]:
        """The cells not shown as numbers that a reader could work out exactly: by the bounds, or by the sums
        alone."""
        bounds = narrowed(trial, sums, below, parts)
        found = {c for c, value in trial.items() if isinstance(value, str) and bounds[c][0] == bounds[c][1]}
        return found if found & small else found | determined(trial, sums)  # the costlier search when needed

    found = pinned(cells)
    while found & small:
        # a 0 is never hidden (a breakdown that does not list a part says it is 0): a hidden part is then at least 1,
        # as `published_bounds` tells readers
        around = {cell for equation in sums if any(c in found for c, _ in equation) for cell, _ in equation
                  if cells[cell] not in (HIDDEN, 0)}
        order = sorted(around, key=lambda c: (isinstance(cells[c], str), not is_part(c),
                                              cells[c] if isinstance(cells[c], int) else 1 << 30,
                                              str(c)))
        if not order:
            return cells
        if tried:
            _, _, chosen = min((len(pinned({**cells, c: HIDDEN}) & small), n, c) for n, c in enumerate(order))
        else:  # the first in that order, untried
            chosen = order[0]
        cells[chosen] = HIDDEN
        found = pinned(cells)
    return cells


def shown(values: dict[str, Any], below: int) -> dict[str, Any]:
    """One table's measures as they may leave the service: small counts suppressed, breakdowns too, and then as many
    more hidden as it takes that no suppressed count can be worked out from a total and its other parts."""
    return jointly_shown({ALL: values}, below)[ALL]


def _suppressed(values: dict[str, Any], below: int) -> dict[str, Any]:
    """A table's measures with each small count (a breakdown's parts too) as "<5", the match rate as a percentage
    (or "not shown"), and amounts of money as they are."""
    counted = {m.key: m.is_count for m in MEASURES}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "match_rate" and isinstance(value, tuple):
            out[key] = match_rate(*value, below)
        elif key in AMOUNTS:
            out[key] = dict(value)  # money, not a count of anyone
        elif isinstance(value, dict):
            out[key] = {name: suppress(n, below) for name, n in value.items()}
        else:
            out[key] = suppress(value, below, counted.get(key, True))
    return out


AMOUNTS = ("volunteer_time_value",)  # measures by currency: amounts, never suppressed


# --- every view of a span, protected together ----------------------------------------------------------------------
#
# A manager can ask for all their communities or one, all kinds of help or one, all sources or one: every such view
# of one span is read from one table, protected as a whole, so that no view subtracted from another gives a
# suppressed count away (all communities' requests less one community's are the other's).

View = tuple[str | None, str | None, str | None]  # (community, kind, source), each None for all of them
ALL: View = (None, None, None)
ANY = "*"  # in a joint cell: the same whatever kind or source is asked for
# Counts no kind or source narrows: a filtered view shows the unfiltered view's.
UNFILTERED = ("volunteers_registered", "group_activities", "group_attendance", "providers_adopting",
              "activities_by_kind", "attendance_by_kind")
KIND_ONLY = ("concerns_raised", "concerns_closed")  # a concern has a kind of help, and no source
# Counts of nothing a request is about (volunteers joining, deaths, education, check-ins, surveys): 0 in a view of
# one kind or source. Every other count follows the requests a view is about, and adds up over kinds and sources.
NOT_OF_REQUESTS = ("new_volunteers", "volunteers_paused", "volunteers_left", "deaths_recorded", "bereavement_offered",
                   "education_reached", "wellbeing_prompted", "wellbeing_answered", "wellbeing_talk",
                   "wellbeing_scores", "carer_survey_answers", "user_survey_answers", "survey_responses",
                   "survey_answers")
# A breakdown's part that is another view's total: requests of a kind are the requests received in that kind's view.
SAME_AS = {"requests_by_kind": (1, "requests_received"), "requests_by_source": (2, "requests_received"),
           "tasks_by_kind": (1, "tasks_completed"), "signposted_by_kind": (1, "requests_signposted")}


def requests_known(requests: Iterable[Fact]) -> dict[uuid.UUID, tuple[str, str | None, str | None]]:
    """Each request's kind now, source and community, from its submission and any corrections (for `every_view`,
    worked out once for all the spans asked about)."""
    requests = list(requests)
    kinds = kinds_now(requests)
    return {f.request_id: (kinds[f.request_id], f.source, f.community) for f in requests
            if f.event_type == "request.submitted"}


def every_view(facts: list[Fact], activities: list[Activity], *, volunteer_changes: list[Fact], history: list[Fact],
               requests: dict[uuid.UUID, tuple[str, str | None, str | None]], communities: Iterable[str],
               asked: tuple[str | None, str | None] = (None, None),
               register: Register | None = None, end: date | None = None,
               hourly_values: dict[str, tuple[float, str]] | None = None,
               monitoring: dict[str, Monitoring] | None = None) -> dict[View, dict[str, Any]]:
    """Every measure of one span (as `measures` gives it, unsuppressed) in every view a manager of `communities` can
    ask for: all of them (when there are several) and each, by every kind of help and source the span's facts are
    about (and the `asked` (kind, source)) and by none. `requests`: each of the communities' requests (on any day)
    with its kind now, source and community (`requests_known`). Counts no filter narrows (UNFILTERED) are the
    unfiltered view's in every view; group activities give no hours, volunteers or partners to a filtered view."""
    communities = list(communities)
    kinds = kinds_now(history)

    def community_of(fact) -> str | None:
        return fact.community or requests.get(fact.request_id, (None, None, None))[2]

    about = [kinds.get(f.request_id, f.support_type) if f.request_id else f.support_type for f in facts]
    sources = {requests[f.request_id][1] for f in facts if f.request_id in requests}
    kind_views = [None, *sorted(({k for k in about if k in KINDS} | {asked[0]}) - {None})]
    source_views = [None, *sorted((sources & set(SOURCES) | {asked[1]}) - {None})]
    groups = {c: [c] for c in communities} | ({None: communities} if len(communities) > 1 else {})
    history_of: dict[uuid.UUID, list[Fact]] = defaultdict(list)
    for fact in history:
        history_of[fact.request_id].append(fact)
    views: dict[View, dict[str, Any]] = {}
    for community, members in groups.items():
        wanted = set(members)
        own = [f for f in facts if community_of(f) in wanted]
        own_requests = {f.request_id for f in own if f.request_id in requests}
        for kind in kind_views:
            for source in source_views:
                if kind is None and source is None:
                    views[(community, None, None)] = measures(
                        own, [a for a in activities if a.community in wanted],
                        volunteer_changes=[f for f in volunteer_changes if f.community in wanted], history=history,
                        register=register, communities=members, end=end, hourly_values=hourly_values,
                        monitoring=monitoring)
                    continue
                kept = {r for r in own_requests if (kind is None or requests[r][0] == kind)
                        and (source is None or requests[r][1] == source)}
                counted = measures([f for f in own if f.request_id in kept or f.event_type.startswith("concern.")],
                                   [], volunteer_changes=[], history=[f for r in kept for f in history_of[r]],
                                   kept=kept, kind=kind, source=source,
                                   register=register, communities=members, end=end, hourly_values=hourly_values,
                                   monitoring=monitoring)
                unfiltered = views[(community, None, None)]
                views[(community, kind, source)] = counted | {key: unfiltered[key] for key in UNFILTERED}
    return views


def _joint_cell(view: View, cell: Cell) -> Cell:
    """Where a view's cell is in the joint table: (community, kind, source, cell), the same place for every view
    that shows the same count (a kind's part of the requests by kind is that kind's view's requests received)."""
    community, kind, source = view
    key, part = cell if isinstance(cell, tuple) else (cell, None)
    if key in UNFILTERED:
        return community, ANY, ANY, cell
    if key in KIND_ONLY:
        return community, kind, ANY, cell
    if key in SAME_AS:
        at, total = SAME_AS[key]
        place = [community, kind, source]
        place[at] = part
        return (*place, total)
    return community, kind, source, cell


def _across_views(table: dict[Cell, int]) -> list[Equation]:
    """The sums a reader knows between views: all communities are the sum of each; for counts that follow requests,
    all kinds the sum of each kind, all sources of each source (and concerns over kinds). Distinct counts (people,
    volunteers, partners) are not exactly additive (one person helped with two kinds is one person supported):
    treating them as sums is conservative, since equality would tell a reader more than the real "at most the
    sum". Where the parts add up to less than their total (a request from no source the filters name), the rest
    is a cell of its own that no view shows."""
    found: list[Equation] = []
    for axis in (0, 1, 2):
        by_margin: dict[Cell, list[Cell]] = defaultdict(list)
        for cell in [cell for cell in table if len(cell) == 4]:  # not the rests
            key = cell[3][0] if isinstance(cell[3], tuple) else cell[3]
            if cell[axis] in (None, ANY) or (axis and key in NOT_OF_REQUESTS) or (axis == 2 and key in KIND_ONLY):
                continue
            by_margin[(*cell[:axis], None, *cell[axis + 1:])].append(cell)
        for margin, parts in by_margin.items():
            if margin not in table:
                continue
            equation = [(margin, -1)] + [(part, 1) for part in parts]
            rest = table[margin] - sum(table[part] for part in parts)
            if rest > 0:
                table[("rest", margin)] = rest
                equation.append((("rest", margin), 1))
            found.append(equation)
    return found


def jointly_shown(views: dict[View, dict[str, Any]], below: int) -> dict[View, dict[str, Any]]:
    """Every view of one span (from `every_view`) as it may leave the service: small counts "<5", and as many more
    "hidden" as it takes that no suppressed count can be worked out, neither within a view (a breakdown adds up to
    its total) nor across views (a view of all communities, kinds or sources adds up to those of each): each view
    is read from one table of (community, kind, source) cells with every margin, protected as a whole (each group
    of cells that share no sum with another on its own)."""
    out = {view: _suppressed(values, below) for view, values in views.items()}
    if below > 1:
        cells: dict[Cell, Any] = {}
        table: dict[Cell, int] = {}
        sums: dict[frozenset, Equation] = {}
        placed: dict[tuple[View, Cell], Cell] = {}
        for view, values in out.items():
            for equation in equations(values):
                terms = []
                for cell, sign in equation:
                    joint = placed[(view, cell)] = _joint_cell(view, cell)
                    cells[joint] = out[view][cell[0]][cell[1]] if isinstance(cell, tuple) else out[view][cell]
                    table[joint] = views[view][cell[0]][cell[1]] if isinstance(cell, tuple) else views[view][cell]
                    terms.append((joint, sign))
                sums.setdefault(frozenset(terms), terms)
            for key in SIDE_BY_SIDE:  # every count, in sums or not, is in the table (across views it may be)
                if key in values and (view, key) not in placed:
                    joint = placed[(view, key)] = _joint_cell(view, key)
                    cells[joint], table[joint] = values[key], views[view][key]
        across = _across_views(table)
        rests = {cell for cell in table if len(cell) == 2}  # what no view shows: it may be 0
        cells.update({cell: HIDDEN for cell in rests})
        parts = set(cells) - rests  # a 0 is never hidden, so "hidden" says at least 1 of every other cell
        for equation in across:
            sums.setdefault(frozenset(equation), equation)
        for members, component in _connected(cells, list(sums.values())):
            cells.update(protect({cell: cells[cell] for cell in members}, component, below, parts,
                                 tried=len(views) == 1))
        for (view, cell), joint in placed.items():
            if isinstance(cell, tuple):
                out[view][cell[0]][cell[1]] = cells[joint]
            else:
                out[view][cell] = cells[joint]
    for values in out.values():
        if "survey_means" in values:  # a mean could narrow a hidden band: shown only beside a distribution in full
            values["survey_means"] = {question: mean if all(
                isinstance(n, int) for n in [values["survey_responses"].get(question)] + [
                    n for p, n in values.get("survey_answers", {}).items() if p.rsplit(": ", 1)[0] == question])
                else NOT_SHOWN for question, mean in values["survey_means"].items()}
    return out


def apart(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A span's measures (as shown) and its reach and equity distributions, apart: they are protected together
    (each distribution adds up to the people supported) and published side by side."""
    return ({k: v for k, v in values.items() if k not in EQUITY_KEYS},
            {k: v for k, v in values.items() if k in EQUITY_KEYS})


def csv_rows(result: dict[str, Any]) -> list[list[Any]]:
    """The report as a table: one row per period and measure (breakdowns one row per part)."""
    labels = {m.key: m.label for m in MEASURES} | dict(BREAKDOWNS) | EQUITY_LABELS
    rows = [["period_start", "period_end", "measure", "value", "previous_period_value"]]
    for period in result["periods"]:
        previous = {**period["previous"], **period.get("previous_equity", {})}
        for key, value in {**period["measures"], **period.get("equity", {})}.items():
            before = previous.get(key)
            if key in AMOUNTS:
                rows.append([period["start"], period["end"], labels[key], money_text(value), money_text(before)])
            elif isinstance(value, dict):
                # a mean of no answers is none, not 0: a question unanswered this period has no row of its mean
                parts = set(value) if key == "survey_means" else set(value) | set(before or {})
                for part in sorted(parts):
                    rows.append([period["start"], period["end"], f"{labels[key]} {part}", value.get(part, 0),
                                 (before or {}).get(part, "" if key == "survey_means" else 0)])
            else:
                rows.append([period["start"], period["end"], labels[key], "" if value is None else value,
                             "" if before is None else before])
    return rows


# --- communities side by side (the ICS view) ----------------------------------------------------------------------

TOTAL = "total"  # the column that adds up the communities
SIDE_BY_SIDE = tuple(m.key for m in MEASURES if m.is_count)  # the counts compared, then the equity distributions


def side_by_side(columns: dict[str, dict[str, Any]], below: int) -> dict[str, dict[str, Any]]:
    """Communities' counts and reach and equity distributions (unsuppressed, from `measures`) beside each other and
    their total (their sum), protected together as `jointly_shown` protects views (see `columns_of`)."""
    views: dict[View, dict[str, Any]] = {(c, None, None): values for c, values in columns.items()}
    if len(columns) > 1:
        views[ALL] = {key: sum(values[key] for values in columns.values()) for key in SIDE_BY_SIDE} | {
            key: dict(sum((Counter(values[key]) for values in columns.values()), Counter())) for key in EQUITY_KEYS}
    return columns_of(jointly_shown(views, below), list(columns))


def columns_of(views: dict[View, dict[str, Any]], communities: list[str]) -> dict[str, dict[str, Any]]:
    """The ICS view from views as they may leave the service (`jointly_shown`): each community's counts and
    distributions beside the others and their total (the view of them all), so that no column tells more than the
    dashboard of that community does, and no small count can be worked out within a column or across. Every column
    lists every part any column has (0 where none). With one community there is no total column."""
    table = {c: views[(c, None, None)] for c in communities} | ({TOTAL: views[ALL]} if len(communities) > 1 else {})
    parts = {key: sorted(set().union(*(column[key] for column in table.values()))) for key in EQUITY_KEYS}
    return {name: {key: column[key] for key in SIDE_BY_SIDE}
            | {key: {part: column[key].get(part, 0) for part in parts[key]} for key in EQUITY_KEYS}
            for name, column in table.items()}


def _connected(cells: dict[Cell, Any], sums: list[Equation]) -> list[tuple[set[Cell], list[Equation]]]:
    """The cells and sums in groups that share no cell (each protected on its own, which is quicker and the same)."""
    group_of: dict[Cell, int] = {}
    groups: dict[int, tuple[set[Cell], list[Equation]]] = {}
    for n, equation in enumerate(sums):
        joined = {group_of[cell] for cell, _ in equation if cell in group_of}
        members, kept = {cell for cell, _ in equation}, [equation]
        for g in joined:
            members |= groups[g][0]
            kept += groups.pop(g)[1]
        groups[n] = (members, kept)
        for cell in members:
            group_of[cell] = n
    return [(members & set(cells), kept) for members, kept in groups.values()]


def side_by_side_rows(result: dict[str, Any]) -> list[list[Any]]:
    """The ICS view as a table: a row per measure (a distribution a row per part), a column per community and the
    total (when there are several)."""
    columns = list(result["columns"])
    labels = {m.key: m.label for m in MEASURES} | EQUITY_LABELS
    rows = [["period_start", "period_end", "measure", *columns]]
    first = result["columns"][columns[0]]
    for key in (*SIDE_BY_SIDE, *EQUITY_KEYS):
        if isinstance(first[key], dict):
            rows += [[result["from"], result["to"], f"{labels[key]} {part}",
                      *(result["columns"][c][key][part] for c in columns)] for part in first[key]]
        else:
            rows.append([result["from"], result["to"], labels[key], *(result["columns"][c][key] for c in columns)])
    return rows
