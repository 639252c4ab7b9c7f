"""Who may be asked for a request, in what order, and why: matching's rules as plain functions.

Every rule has a name; `exclusion` gives the first rule that rules a volunteer out, so the same code that
chooses volunteers also explains to a coordinator why nobody was asked ("12 too far, 3 without bereavement
training"). Nothing here touches the database: the handlers gather what the rules need.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from shared.contracts import DAYS
from shared.taxonomy import CHECKS, KINDS

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class Policy:
    """The numbers a programme may tune (environment variables in brackets)."""

    batch_size: int = 3  # offers sent at once; the first YES wins (CCS_OFFER_BATCH)
    max_rounds: int = 3  # batches before a request is unmatched (CCS_MAX_ROUNDS)
    request_radius_km: float = 15.0  # how far a volunteer may be from the person (CCS_REQUEST_RADIUS_KM)
    offer_minutes: dict[str, int] = field(default_factory=lambda: {"routine": 30, "soon": 20, "urgent": 10})
    fairness_km: float = 2.0  # each offer or task in the last 28 days counts as this much further away
    continuity_km: float = 10.0  # having helped this person before counts as this much nearer
    recent_days: int = 28

    @classmethod
    def from_env(cls) -> "Policy":
        """The policy, with any numbers the environment sets."""
        base = cls()
        routine = int(os.environ.get("CCS_OFFER_MINUTES", base.offer_minutes["routine"]))
        return cls(batch_size=int(os.environ.get("CCS_OFFER_BATCH", base.batch_size)),
                   max_rounds=int(os.environ.get("CCS_MAX_ROUNDS", base.max_rounds)),
                   request_radius_km=float(os.environ.get("CCS_REQUEST_RADIUS_KM", base.request_radius_km)),
                   offer_minutes={"routine": routine, "soon": max(1, routine * 2 // 3), "urgent": max(1, routine // 3)})


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points, in kilometres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


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


def _check_valid(volunteer: Any, check: str, on: date) -> bool:
    return any(c.check == check and c.done_on <= on and (c.expires_on is None or c.expires_on >= on)
               for c in volunteer.checks)


def _away(volunteer: Any, on: date) -> bool:
    return any(t.starts_on <= on <= t.ends_on for t in volunteer.time_away)


def exclusion(volunteer: Any, request: Any, facts: Facts, slots: list[tuple[date, str]], policy: Policy) -> str | None:
    """The first rule that rules this volunteer out for this request, or None if they may be asked.

    Rules, in order: status, sms, skill, check:<name>, away, availability, too_far, language, gender,
    weekly_cap, already_asked. Checks, time away, availability and the weekly cap are judged on the days the
    task could happen: the volunteer must be able to take at least one of them."""
    kind = KINDS[request.support_type]
    if volunteer.status != "active":
        return "status"
    if volunteer.sms_opted_out_at is not None:
        return "sms"
    if kind.skill not in volunteer.skills:
        return "skill"
    for check in kind.checks:
        if not any(_check_valid(volunteer, check, day) for day, _ in slots):
            return f"check:{check}"
    if slots and all(_away(volunteer, day) for day, _ in slots):
        return "away"
    free = [(day, part) for day, part in slots if not _away(volunteer, day)]
    if volunteer.availability:
        free = [(day, part) for day, part in free if f"{DAYS[day.weekday()]}:{part}" in volunteer.availability]
        if not free:
            return "availability"
    if facts.distance_km > min(volunteer.max_distance_km, policy.request_radius_km):
        return "too_far"
    if request.volunteer_language and request.volunteer_language not in volunteer.languages:
        return "language"
    if request.volunteer_gender and request.volunteer_gender != volunteer.gender:
        return "gender"
    if free and all(facts.tasks_in_week.get(day - timedelta(days=day.weekday()), 0) >= volunteer.weekly_cap
                    for day, _ in free):
        return "weekly_cap"
    if facts.asked:
        return "already_asked"
    return None


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


def rule_text(rule: str) -> str:
    """A rule's name as a coordinator reads it."""
    if rule.startswith("check:"):
        return f"without {CHECKS[rule.split(':', 1)[1]][0].lower()}{CHECKS[rule.split(':', 1)[1]][1:]} in date"
    return RULE_TEXT[rule]


def explain(exclusions: Counter) -> str:
    """'12 too far, 3 without bereavement-support training in date', largest first; or that nobody is registered."""
    if not exclusions:
        return "no volunteers are registered in this community"
    ordered = sorted(exclusions.items(), key=lambda item: (-item[1], rule_text(item[0])))
    return ", ".join(f"{n} {rule_text(rule)}" for rule, n in ordered)
