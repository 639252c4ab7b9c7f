"""Metrics' use cases: record an event as a fact, place facts again, log a group activity, and the counts a
manager sees (the API's and the CSV's, the dashboard's, and the one-page report's).

Each takes a unit of work, the acting user and the settings as arguments; the counts are scoped to the actor's
communities, so a manager sees counts of their own communities only, and never a person.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable

from services.metrics import domain
from services.metrics.domain import Activity, Baseline, Fact, Filters, HourlyValue, Monitoring, Organisation, Register
from shared import communities as known_communities
from shared import equity
from shared.auth import Actor
from shared.contracts import Event
from shared.contracts.metrics import ActivityLogged, VolunteerHours
from shared.idempotency import Created, Idempotency, keep, replay
from shared.scoping import narrowed

if TYPE_CHECKING:
    from services.metrics.adapters import MetricsUnitOfWork
    from services.metrics.bootstrap import MetricsSettings


# --- the facts: from the bus ---------------------------------------------------------------------------------------

def _place(uow: MetricsUnitOfWork, fact: Fact) -> None:
    """Give a fact its community (an outcome without one takes its request's) and its day in that community."""
    if fact.community is None and fact.request_id is not None:
        fact.community = uow.facts.community_of_request(fact.request_id)
    community = known_communities.all_communities().get(fact.community or "")
    fact.day = domain.local_day(fact.occurred_at, community.zone if community else None)


def record_event(uow: MetricsUnitOfWork, event: Event) -> None:
    """Keep what an event says that counting needs, once however often it is delivered, in the caller's unit of
    work (the handler's, which records the event as handled in the same transaction)."""
    if uow.facts.get(event.event_id) is not None:
        return
    fact = domain.fact_of(event)
    _place(uow, fact)
    uow.facts.add(fact)
    if fact.community is not None and fact.request_id is not None:
        # an outcome that overtook its request (a cancellation published a moment after it) takes its place now
        for early in uow.facts.unplaced(fact.request_id):
            _place(uow, early)


def record_organisation(uow: MetricsUnitOfWork, event: Event) -> None:
    """Keep an organisation as intake's register now has it (added, changed, or merged into another); a redelivery,
    or an older change arriving after a newer one for a merged organisation, leaves it merged."""
    change = event.payload
    organisation = uow.organisations.get(change.organisation_id)
    if organisation is None:
        uow.organisations.add(Organisation(id=change.organisation_id, community=change.community, name=change.name,
                                           type=change.type, adopted_on=change.adopted_on,
                                           merged_into=change.merged_into))
        return
    organisation.community, organisation.name, organisation.type = change.community, change.name, change.type
    organisation.adopted_on = change.adopted_on
    organisation.merged_into = change.merged_into or organisation.merged_into  # a merge is for good


def record_monitoring(uow: MetricsUnitOfWork, event: Event) -> None:
    """Keep a person's equity monitoring as intake last sent it: a redelivery, or an older answer arriving after a
    newer one, changes nothing; without consent every answer is forgotten (kept as None)."""
    sent = event.payload
    answers = uow.monitoring.get(sent.person_ref)
    if answers is None:
        answers = Monitoring(person_ref=sent.person_ref, community=sent.community, recorded_at=event.occurred_at)
        uow.monitoring.add(answers)
    elif answers.recorded_at > event.occurred_at:
        return
    answers.community, answers.recorded_at, answers.consented = sent.community, event.occurred_at, sent.consented
    for dimension, _ in equity.DIMENSIONS:
        setattr(answers, dimension, getattr(sent, dimension) if sent.consented else None)


def rebuild(uow: MetricsUnitOfWork) -> int:
    """Work out every fact's community and day again (after events arrived out of order, or a community's time
    zone changed); returns how many changed."""
    changed = 0
    with uow:
        for fact in uow.facts.oldest_first():
            before = (fact.community, fact.day)
            _place(uow, fact)
            changed += (fact.community, fact.day) != before
        uow.commit()
    return changed


# --- group activities ----------------------------------------------------------------------------------------------

def log_activity(uow: MetricsUnitOfWork, actor: Actor, data: dict[str, Any], now: datetime,
                 key: Idempotency | None = None,
                 render: Callable[[Activity], dict[str, Any]] = lambda a: {}) -> Created:
    """Log a group activity volunteers ran, in the community named (one of the actor's) or the actor's first, with
    the volunteers who ran it and each one's hours (by id: metrics never knows their names); with an
    Idempotency-Key, once, so a retried log never counts an activity twice. Its hours go to matching
    (`activity.logged`, in the same transaction), which adds them to each volunteer's own."""
    community = domain.community_to_log(actor.communities, data.get("community"))
    given = {str(v["volunteer_id"]): v["hours"] for v in data.get("volunteers", [])}
    ran = list(dict.fromkeys([*(str(v) for v in data.get("volunteer_ids", [])), *given]))
    activity = Activity(
        id=uuid.uuid4(), community=community, kind=data["kind"], held_on=data["held_on"],
        attendance=data["attendance"], organisation=data.get("organisation"),
        organisation_type=data.get("organisation_type"), volunteer_ids=ran, volunteer_hours=given,
        created_by=actor.subject, created_at=now)
    with uow:
        if (earlier := replay(uow.answers, actor, key)) is not None:
            return earlier
        uow.activities.add(activity)
        uow.flush()  # stored before its answer is made, with every default filled in
        if activity.volunteer_hours:
            uow.publish(ActivityLogged(
                activity_id=activity.id, community=community, kind=activity.kind, held_on=activity.held_on,
                volunteers=[VolunteerHours(**v) for v in activity.contributions()]))
        created = keep(uow.answers, actor, key, activity, render(activity))
        uow.commit()
    return created


def registered_names(uow: MetricsUnitOfWork, actor: Actor) -> list[str]:
    """The names in the register of the actor's communities (not those merged into another), to choose an
    activity's organiser from, so that it is counted as that partner."""
    with uow:
        return sorted({o.name for o in uow.organisations.of(actor) if o.merged_into is None}, key=str.casefold)


def activities_logged(uow: MetricsUnitOfWork, actor: Actor, limit: int = 100) -> list[Activity]:
    """The group activities logged in the actor's communities, the most recently held first."""
    with uow:
        return uow.activities.latest(actor, limit)


# --- baselines -----------------------------------------------------------------------------------------------------

def set_baseline(uow: MetricsUnitOfWork, actor: Actor, community: str | None, starts_on: date,
                 now: datetime) -> Baseline:
    """Set the period a community compares itself with (the actor's only community, or the one named, which must be
    theirs): the period of each length that `starts_on` falls in. Setting it again moves it."""
    chosen = domain.community_to_log(actor.communities, community, "set a baseline")
    with uow:
        baseline = uow.baselines.of(chosen)
        if baseline is None:
            baseline = Baseline(community=chosen, starts_on=starts_on, set_by=actor.subject, set_at=now)
            uow.baselines.add(baseline)
        else:
            baseline.starts_on, baseline.set_by, baseline.set_at = starts_on, actor.subject, now
        uow.commit()
        return baseline


def remove_baseline(uow: MetricsUnitOfWork, actor: Actor, community: str | None) -> None:
    """No baseline for the actor's only community, or the one named (which must be theirs)."""
    chosen = domain.community_to_log(actor.communities, community, "remove a baseline")
    with uow:
        uow.baselines.remove(chosen)
        uow.commit()


def baseline_of(uow: MetricsUnitOfWork, actor: Actor, community: str | None) -> Baseline | None:
    """The baseline of the actor's only community, or of the one named (NotYourCommunity for another's)."""
    chosen = domain.community_to_log(actor.communities, community, "see a baseline")
    with uow:
        return uow.baselines.of(chosen)


# --- the value of volunteer time ----------------------------------------------------------------------------------

def set_hourly_value(uow: MetricsUnitOfWork, actor: Actor, community: str | None, amount: float, currency: str,
                     applies_from: date, now: datetime) -> HourlyValue:
    """Value an hour of the community's volunteer time (the actor's only community, or the one named, which must be
    theirs) at `amount` from `applies_from` on: every period ending on or after that day is valued at it, until a
    later change. Every change is kept, with who made it and when."""
    chosen = domain.community_to_log(actor.communities, community, "set the value of volunteer time")
    value = HourlyValue(id=uuid.uuid4(), community=chosen, amount=amount, currency=currency,
                        applies_from=applies_from, set_by=actor.subject, set_at=now)
    with uow:
        uow.hourly_values.add(value)
        uow.commit()
    return value


def hourly_values_of(uow: MetricsUnitOfWork, actor: Actor, community: str | None,
                     today: date) -> dict[str, Any]:
    """The community's hourly value today, and every change made to it (the latest first)."""
    chosen = domain.community_to_log(actor.communities, community, "see the value of volunteer time")
    with uow:
        changes = uow.hourly_values.of([chosen])
        amount, currency = domain.value_in_effect(changes, chosen, today, _own_value(chosen))
        return {"community": chosen, "amount": amount, "currency": currency, "changes": changes}


def _own_value(community: str) -> tuple[float, str]:
    """A community's hourly value as communities.json gives it (0 in its country's currency when it gives none)."""
    known = known_communities.all_communities().get(community)
    return (known.hourly_value, known.money) if known else (0.0, "GBP")


# --- the counts ----------------------------------------------------------------------------------------------------

def _views_of_each(uow: MetricsUnitOfWork, actor: Actor, spans: list[tuple[date, date]], kind: str | None,
                   source: str | None) -> list[dict[domain.View, dict[str, Any]]]:
    """Every view a manager of the actor's communities can ask for (`domain.every_view`: all of them and each, by
    every kind and source and by none) of each span (consecutive, oldest first), unsuppressed. The whole range of
    all the actor's communities is read at once, in five queries however many spans there are, and split by day
    here."""
    scope = narrowed(actor, actor.communities)
    first, last = spans[0][0], spans[-1][1]
    in_range = uow.facts.in_span(scope, first, last)
    facts_on: dict[date, list] = defaultdict(list)
    for fact in in_range:
        facts_on[fact.day].append(fact)
    activities_on: dict[date, list] = defaultdict(list)
    for activity in uow.activities.in_span(scope, first, last):
        activities_on[activity.held_on].append(activity)
    changes = uow.facts.volunteer_changes(scope, last)  # oldest first
    register = Register(uow.organisations.of(scope))
    values = uow.hourly_values.of(list(scope.communities))
    # Each request's history: what the range holds of it already, and the rest (before or after the range, or not
    # yet placed in a community), in the order the events happened.
    history_of: dict[uuid.UUID, list] = defaultdict(list)
    for fact in sorted([f for f in in_range if f.event_type in domain.REQUEST_HISTORY and f.request_id is not None]
                       + uow.facts.history_of(scope, first, last), key=lambda f: (f.occurred_at, str(f.event_id))):
        history_of[fact.request_id].append(fact)
    # the kind now, source and community of each request the range is about (from its history: not every request
    # ever made), of the actor's communities
    requests = {request: about for request, about in domain.requests_known(
        fact for facts in history_of.values() for fact in facts).items() if about[2] in scope.communities}
    monitoring = uow.monitoring.of(scope, {f.person_ref for facts in history_of.values() for f in facts
                                           if f.event_type == "request.submitted" and f.person_ref})
    counted = []
    for span_first, span_last in spans:
        days = [span_first + timedelta(days=n) for n in range((span_last - span_first).days + 1)]
        facts = [fact for day in days for fact in facts_on.get(day, ())]
        about = {fact.request_id for fact in facts if fact.request_id is not None}
        counted.append(domain.every_view(
            facts, [activity for day in days for activity in activities_on.get(day, ())],
            volunteer_changes=[change for change in changes if change.day <= span_last],
            history=[fact for request in about for fact in history_of.get(request, ())], requests=requests,
            communities=scope.communities, asked=(kind, source), register=register, end=span_last,
            hourly_values={c: domain.value_in_effect(values, c, span_last, _own_value(c)) for c in scope.communities},
            monitoring=monitoring))
    return counted


def _view(communities: list[str], kind: str | None, source: str | None) -> domain.View:
    """The view of these of the actor's communities (all of them, or one: None when all are several)."""
    return (None if len(communities) > 1 else communities[0], kind, source)


def _counts(uow: MetricsUnitOfWork, actor: Actor, communities: list[str], period: str, start: date, end: date,
            below: int, kind: str | None = None, source: str | None = None) -> dict[str, Any]:
    """Each period from `start` to `end` with every measure and the period before's beside it, of these of the
    actor's communities only, as they may leave the service: each span's views protected together with every other
    view the actor could ask for (`domain.jointly_shown`), so no two of them subtracted give a small count away; and,
    for one community whose manager set one, its baseline period's measures (None otherwise: communities' baselines
    are different periods, so they are not added up)."""
    view = _view(communities, kind, source)
    spans = domain.spans(period, start, end)
    counted = [domain.apart(domain.jointly_shown(views, below)[view])
               for views in _views_of_each(uow, actor, spans, kind, source)]
    rows = [{"start": first, "end": last, "measures": now, "previous": before, "equity": now_equity,
             "previous_equity": before_equity}
            for (first, last), (now, now_equity), (before, before_equity) in zip(spans[1:], counted[1:], counted)]
    baseline = None
    if len(communities) == 1 and (chosen := uow.baselines.of(communities[0])) is not None:
        first, last = chosen.span(period)
        views = _views_of_each(uow, actor, [(first, last)], kind, source)[0]
        baseline = {"start": first, "end": last, "measures": domain.apart(domain.jointly_shown(views, below)[view])[0]}
    return {"period": period, "from": start, "to": end, "communities": list(communities), "periods": rows,
            "baseline": baseline}


def activity(uow: MetricsUnitOfWork, actor: Actor, period: str, filters: Filters, settings: MetricsSettings,
             today: date) -> dict[str, Any]:
    """The counts a manager asks the API for: each period (by default from a year before `to`, itself by default
    today) beside the one before; only the actor's communities (NotYourCommunity for another's)."""
    communities = domain.communities_asked(actor.communities, filters.community)
    end = filters.end or today
    start = filters.start or domain.a_year_before(period, end)
    with uow:
        return _counts(uow, actor, narrowed(actor, communities).communities, period, start, end,
                       settings.suppress_below, filters.kind, filters.source)


def dashboard(uow: MetricsUnitOfWork, actor: Actor, period: str, filters: Filters, settings: MetricsSettings,
              today: date) -> dict[str, Any]:
    """The dashboard's counts: by default the last few periods up to today, for the community asked about if it is
    the actor's, else for all of theirs."""
    communities = domain.communities_shown(actor.communities, filters.community)
    end = filters.end or today
    start = filters.start or domain.charted_from(period, end)
    with uow:
        return _counts(uow, actor, narrowed(actor, communities).communities, period, start, end,
                       settings.suppress_below, filters.kind, filters.source)


def report(uow: MetricsUnitOfWork, actor: Actor, period: str, filters: Filters, settings: MetricsSettings,
           today: date) -> dict[str, Any]:
    """One period (the one `filters.end` falls in, by default the last whole one) beside the period before, for a
    funder; `before` is that earlier period's first and last day."""
    communities = domain.communities_shown(actor.communities, filters.community)
    first, last = domain.period_of(period, filters.end or domain.last_whole(period, today))
    scope = narrowed(actor, communities)
    with uow:  # the six periods up to this one, for the report's charts; the last is the one reported
        counted = _counts(uow, actor, scope.communities, period, domain.charted_from(period, last), last,
                          settings.suppress_below)
    return {**counted, "from": first, "periods": counted["periods"][-1:], "before": domain.previous(period, first),
            "trend": counted["periods"]}


def communities_side_by_side(uow: MetricsUnitOfWork, actor: Actor, period: str, to: date | None,
                             settings: MetricsSettings, today: date) -> dict[str, Any]:
    """The ICS view: one period (the one `to` falls in, by default the last whole one) of each of the actor's
    communities beside the others and their total, read from the same protected views as the dashboard's
    (domain.columns_of), so no column and no dashboard subtracted from another gives a small count away. Only the
    actor's communities are ever read; a manager of one community sees just theirs."""
    first, last = domain.period_of(period, to or domain.last_whole(period, today))
    with uow:
        views = _views_of_each(uow, actor, [(first, last)], None, None)[0]
    return {"period": period, "from": first, "to": last, "communities": list(actor.communities),
            "columns": domain.columns_of(domain.jointly_shown(views, settings.suppress_below),
                                         list(actor.communities))}
