"""The counts managers report, for a community and a period, with the period before beside them.

Each measure is worked out from the facts (one per event) and the group activities, so it is the same however
often an event was delivered. Small counts are shown as "<5" wherever they leave the service (`suppress`).
"""

from __future__ import annotations

import os
import statistics
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.metrics.model import Activity, Fact
from shared.taxonomy import KINDS

PERIODS = ("day", "week", "month", "quarter", "year")
SOURCES = ("coordinator", "pcn", "social_prescriber", "partner_organisation", "health_system")


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    is_count: bool = True  # counts are suppressed when small; hours and times are not


MEASURES = (
    Measure("requests_received", "Requests received"),
    Measure("requests_matched", "Requests matched"),
    Measure("requests_unmatched", "Requests unmatched"),
    Measure("requests_cancelled", "Requests cancelled"),
    Measure("tasks_completed", "Tasks completed"),
    Measure("volunteer_hours", "Volunteer hours", is_count=False),
    Measure("volunteers_registered", "Volunteers registered (at the end of the period)"),
    Measure("new_volunteers", "New volunteers"),
    Measure("volunteers_paused", "Volunteers who paused"),
    Measure("volunteers_left", "Volunteers who left"),
    Measure("active_volunteers", "Active volunteers"),
    Measure("people_reached", "People supported"),
    Measure("carers_supported", "Carers supported"),
    Measure("bereavement_supports", "Bereavement supports given"),
    Measure("future_planning_reached", "People at future-life-planning education"),
    Measure("group_activities", "Group activities"),
    Measure("group_attendance", "People at group activities"),
    Measure("active_partners", "Active partner organisations"),
    Measure("hours_to_acceptance_median", "Hours from request to acceptance (median)", is_count=False),
    Measure("hours_to_acceptance_p90", "Hours from request to acceptance (90th percentile)", is_count=False),
)
BREAKDOWNS = (("requests_by_source", "Requests received from"), ("requests_by_kind", "Requests received for"),
              ("tasks_by_kind", "Tasks completed for"))


def threshold() -> int:
    """Counts from 1 to this minus one are suppressed (CCS_SUPPRESS_BELOW, default 5, as NHS reporting does)."""
    return int(os.environ.get("CCS_SUPPRESS_BELOW", "5"))


def suppress(value: Any, is_count: bool = True) -> Any:
    """A small count as "<5", so no one can be picked out; zero and larger counts as they are."""
    below = threshold()
    if is_count and isinstance(value, int) and 0 < value < below:
        return f"<{below}"
    return value


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


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return round(ordered[0], 2)
    return round(statistics.quantiles(ordered, n=100, method="inclusive")[int(fraction * 100) - 1], 2)


def measures(session: Session, communities: list[str], first: date, last: date, kind: str | None = None,
             source: str | None = None) -> dict[str, Any]:
    """Every measure for these communities from `first` to `last` (inclusive), unsuppressed."""
    ours = Fact.community.in_(communities)
    # an outcome another worker recorded while its request's fact was still being written has no community yet
    theirs = sa.and_(Fact.community.is_(None), Fact.request_id.in_(sa.select(Fact.request_id).where(
        ours, Fact.event_type == "request.submitted")))
    facts = session.scalars(sa.select(Fact).where(sa.or_(ours, theirs), Fact.day.between(first, last))).all()
    activities = session.scalars(sa.select(Activity).where(Activity.community.in_(communities),
                                                           Activity.held_on.between(first, last))).all()
    requests = [f for f in facts if f.event_type == "request.submitted"
                and (kind is None or f.support_type == kind) and (source is None or f.source == source)]
    kept = None  # with a kind or source asked for, outcomes count only for requests of that kind or source
    if kind or source:
        kept = {f.request_id for f in session.scalars(sa.select(Fact).where(
            Fact.event_type == "request.submitted", Fact.community.in_(communities)))
            if (kind is None or f.support_type == kind) and (source is None or f.source == source)}

    def of(event_type: str) -> list[Fact]:
        return [f for f in facts if f.event_type == event_type and (kept is None or f.request_id in kept)]

    completed = [f for f in of("task.completed") if kind is None or f.support_type == kind]
    volunteers = {f.volunteer_id for f in of("offer.accepted") + completed if f.volunteer_id}
    volunteers |= {uuid.UUID(v) for a in activities for v in a.volunteer_ids}
    bereavement = [f for f in completed if KINDS[f.support_type].category == "bereavement"]
    planning = [f for f in completed if KINDS[f.support_type].category == "future_planning"]
    planning_attendance = sum(a.attendance for a in activities if a.kind == "future_planning_session")
    waits = []
    accepted = {}
    for fact in of("offer.accepted"):
        accepted.setdefault(fact.request_id, fact.occurred_at)
        accepted[fact.request_id] = min(accepted[fact.request_id], fact.occurred_at)
    if accepted:
        submitted = dict(session.execute(sa.select(Fact.request_id, Fact.occurred_at).where(
            Fact.event_type == "request.submitted", Fact.request_id.in_(list(accepted)))).all())
        waits = [(at - submitted[rid]).total_seconds() / 3600 for rid, at in accepted.items() if rid in submitted]
    joined = session.execute(sa.select(Fact.volunteer_id, Fact.event_type, Fact.status).where(
        Fact.event_type.in_(["volunteer.registered", "volunteer.status_changed"]), Fact.community.in_(communities),
        Fact.day <= last).order_by(Fact.occurred_at)).all()
    standing: dict = {}
    for volunteer_id, _, status in joined:
        standing[volunteer_id] = status
    changes = of("volunteer.status_changed")
    partners = {f.organisation for f in requests if f.organisation} | {a.organisation for a in activities
                                                                         if a.organisation}
    return {
        "requests_received": len(requests),
        "requests_matched": len(of("request.matched")),
        "requests_unmatched": len(of("request.unmatched")),
        "requests_cancelled": len(of("request.cancelled")),
        "tasks_completed": len(completed),
        "volunteer_hours": round(sum(f.hours or 0 for f in completed), 2),
        "volunteers_registered": sum(1 for status in standing.values() if status != "left"),
        "new_volunteers": len(of("volunteer.registered")),
        "volunteers_paused": len({f.volunteer_id for f in changes if f.status == "paused"}),
        "volunteers_left": len({f.volunteer_id for f in changes if f.status == "left"}),
        "active_volunteers": len(volunteers),
        "people_reached": len({f.person_ref for f in requests if f.person_ref}),
        "carers_supported": len({f.person_ref for f in requests if f.person_ref and f.is_carer}),
        "bereavement_supports": len(bereavement),
        "future_planning_reached": len(planning) + planning_attendance,
        "group_activities": len(activities),
        "group_attendance": sum(a.attendance for a in activities),
        "active_partners": len(partners),
        "hours_to_acceptance_median": _percentile(waits, 0.5),
        "hours_to_acceptance_p90": _percentile(waits, 0.9),
        "requests_by_source": dict(sorted(Counter(f.source or "coordinator" for f in requests).items())),
        "requests_by_kind": dict(sorted(Counter(f.support_type for f in requests).items())),
        "tasks_by_kind": dict(sorted(Counter(f.support_type for f in completed).items())),
    }


def shown(values: dict[str, Any]) -> dict[str, Any]:
    """Measures as they may leave the service: small counts suppressed, breakdowns too."""
    counted = {m.key: m.is_count for m in MEASURES}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out[key] = {name: suppress(n) for name, n in value.items()}
        else:
            out[key] = suppress(value, counted.get(key, True))
    return out


def report(session: Session, communities: list[str], period: str, start: date, end: date, kind: str | None = None,
           source: str | None = None) -> dict[str, Any]:
    """Each period from `start` to `end` with every measure and the period before's beside it (suppressed)."""
    # each period's "before" is the one listed ahead of it, so every period is counted once
    spans = [previous(period, period_of(period, start)[0]), *periods_between(period, start, end)]
    counted = [shown(measures(session, communities, first, last, kind, source)) for first, last in spans]
    rows = [{"start": first, "end": last, "measures": now, "previous": before}
            for (first, last), now, before in zip(spans[1:], counted[1:], counted)]
    return {"period": period, "from": start, "to": end, "communities": communities, "periods": rows}


def csv_rows(result: dict[str, Any]) -> list[list[Any]]:
    """The report as a table: one row per period and measure (breakdowns one row per part)."""
    labels = {m.key: m.label for m in MEASURES} | dict(BREAKDOWNS)
    rows = [["period_start", "period_end", "measure", "value", "previous_period_value"]]
    for period in result["periods"]:
        for key, value in period["measures"].items():
            before = period["previous"].get(key)
            if isinstance(value, dict):
                for part in sorted(set(value) | set(before or {})):
                    rows.append([period["start"], period["end"], f"{labels[key]} {part}", value.get(part, 0),
                                 (before or {}).get(part, 0)])
            else:
                rows.append([period["start"], period["end"], labels[key], "" if value is None else value,
                             "" if before is None else before])
    return rows
