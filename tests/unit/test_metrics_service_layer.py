"""Metrics' use cases with in-memory repositories: facts recorded once and placed in their community's day, the
rebuild, group activities, and the counts a manager sees (scoped to their communities, small ones suppressed)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pytest

from services.metrics import domain, service_layer
from services.metrics.domain import (Activity, Baseline, Fact, Filters, Monitoring, NotYourCommunity, Organisation,
                                     UnknownFilter)
from services.metrics.entrypoints.handlers import HANDLERS
from shared.auth import Actor
from shared.contracts import EVENTS, EXAMPLES, load_event, make_event
from shared.contracts.metrics import ActivityLogged
from shared.scoping import sees
from tests.unit.fakes import FakeAnswers, FakeUnitOfWork

DAY = date(2026, 3, 10)
NOON = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
MANAGER = Actor(subject="manager@example.org", role="manager", communities=("fylde-coast",))
COORDINATOR = Actor(subject="co@example.org", role="coordinator", communities=("fylde-coast", "cheshire-east"))


@dataclass(frozen=True)
class Settings:
    suppress_below: int = 0  # every count as it is; suppression has its own tests


class FakeFacts:
    """The facts, in memory, answering what adapters.FactRepository's queries answer."""

    def __init__(self):
        self.rows: dict[uuid.UUID, Fact] = {}

    def get(self, event_id):
        return self.rows.get(event_id)

    def add(self, fact):
        self.rows[fact.event_id] = fact

    def community_of_request(self, request_id):
        return next((f.community for f in self.rows.values()
                     if f.request_id == request_id and f.community is not None), None)

    def unplaced(self, request_id):
        return [f for f in self.rows.values() if f.request_id == request_id and f.community is None]

    def oldest_first(self):
        return sorted(self.rows.values(), key=lambda f: f.occurred_at)

    def in_span(self, scope, first, last):
        theirs = {f.request_id for f in self.requests_in(scope)}
        return [f for f in self.rows.values() if first <= f.day <= last and (
            sees(scope, f.community) or (f.community is None and f.request_id in theirs))]

    def requests_in(self, scope):
        return [f for f in self.rows.values() if f.event_type in ("request.submitted", "request.updated")
                and sees(scope, f.community)]

    def history_of(self, scope, first, last):
        spanned = self.in_span(scope, first, last)
        requests = {f.request_id for f in spanned}
        return [f for f in self.rows.values() if f.request_id in requests and f.event_type in domain.REQUEST_HISTORY
                and f not in spanned]

    def volunteer_changes(self, scope, last):
        return [f for f in self.oldest_first() if f.event_type in ("volunteer.registered", "volunteer.status_changed")
                and sees(scope, f.community) and f.day <= last]


class FakeActivities:
    def __init__(self):
        self.rows: list[Activity] = []

    def add(self, activity):
        self.rows.append(activity)

    def in_span(self, scope, first, last):
        return [a for a in self.rows if sees(scope, a.community) and first <= a.held_on <= last]


class FakeBaselines:
    def __init__(self):
        self.rows: dict[str, Baseline] = {}

    def of(self, community):
        return self.rows.get(community)

    def add(self, baseline):
        self.rows[baseline.community] = baseline

    def remove(self, community):
        self.rows.pop(community, None)


class FakeOrganisations:
    def __init__(self):
        self.rows: dict[uuid.UUID, Organisation] = {}

    def get(self, organisation_id):
        return self.rows.get(organisation_id)

    def add(self, organisation):
        self.rows[organisation.id] = organisation

    def of(self, scope):
        return [o for o in self.rows.values() if sees(scope, o.community)]


class FakeHourlyValues:
    def __init__(self):
        self.rows: list = []

    def add(self, value):
        self.rows.append(value)

    def of(self, communities):
        return sorted((v for v in self.rows if v.community in communities), key=lambda v: v.set_at, reverse=True)


class FakeMonitoring:
    def __init__(self):
        self.rows: dict[str, Monitoring] = {}

    def get(self, person_ref):
        return self.rows.get(person_ref)

    def add(self, answers):
        self.rows[answers.person_ref] = answers

    def of(self, scope, person_refs):
        return {ref: m for ref, m in self.rows.items() if ref in person_refs and sees(scope, m.community)}


class FakeMetricsUnitOfWork(FakeUnitOfWork):
    def __init__(self):
        super().__init__()
        self.hourly_values = FakeHourlyValues()
        self.facts = FakeFacts()
        self.activities = FakeActivities()
        self.baselines = FakeBaselines()
        self.organisations = FakeOrganisations()
        self.monitoring = FakeMonitoring()
        self.answers = FakeAnswers()


def event(event_type: str, at: datetime = NOON, **fields):
    """An event as the worker hands it over: its example payload with `fields` changed, happening `at`."""
    envelope = make_event(event_type, {**EXAMPLES[(event_type, 1)], **fields})
    envelope["occurred_at"] = at.isoformat()
    return load_event(envelope)


def deliver(uow, *events) -> None:
    """What the worker does with each event (shared.outbox.handle_once): its handler, once, in a unit of work that
    commits."""
    for each in events:
        with uow:
            if uow.first_time("metrics", each.event_id):
                HANDLERS[each.type](uow, each)
                uow.commit()


def submitted(request_id=None, at=NOON, **fields):
    """A request, from a person of its own unless one is named."""
    fields.setdefault("person_ref", f"p_{uuid.uuid4().hex[:12]}")
    return event("request.submitted", at, request_id=str(request_id or uuid.uuid4()), **fields)


def today(uow, actor=MANAGER, settings=Settings(), **filters) -> dict:
    """The measures of DAY as the API gives them."""
    answer = service_layer.activity(uow, actor, "day", Filters(**filters), settings, DAY)
    return answer["periods"][-1]["measures"]


# --- recording ------------------------------------------------------------------------------------------------------

def test_an_event_becomes_one_fact_however_often_it_is_delivered():
    uow = FakeMetricsUnitOfWork()
    request = submitted(person_ref="p_000000000001", is_carer=True, referrer_organisation="Fylde PCN", source="pcn")
    deliver(uow, request, request, request)
    [fact] = uow.facts.rows.values()
    assert uow.committed
    assert (fact.event_type, fact.community, fact.day, fact.source, fact.person_ref, fact.is_carer,
            fact.organisation) == ("request.submitted", "fylde-coast", DAY, "pcn", "p_000000000001", True,
                                   "Fylde PCN")
    service_layer.record_event(uow, request)  # even without the inbox's record of it
    assert len(uow.facts.rows) == 1


def test_a_facts_day_is_the_day_in_its_communitys_time_zone():
    uow = FakeMetricsUnitOfWork()
    late = datetime(2026, 3, 10, 2, tzinfo=timezone.utc)  # 10 March in Blackpool, still 9 March in Ottawa
    deliver(uow, submitted(at=late, community="ottawa-west"), submitted(at=late))
    assert sorted((f.community, f.day) for f in uow.facts.rows.values()) == [
        ("fylde-coast", DAY), ("ottawa-west", DAY - timedelta(days=1))]


def test_an_outcome_that_overtook_its_request_takes_its_community_and_day_when_the_request_arrives():
    uow = FakeMetricsUnitOfWork()
    request_id = uuid.uuid4()
    evening = datetime(2026, 3, 11, 2, tzinfo=timezone.utc)  # 10 March, 10pm in Ottawa
    deliver(uow, event("request.cancelled", evening, request_id=str(request_id)))
    [early] = uow.facts.rows.values()
    assert (early.community, early.day) == (None, DAY + timedelta(days=1))  # UTC's day, until its community is known
    deliver(uow, submitted(request_id, at=evening - timedelta(hours=20), community="ottawa-west"))
    assert (early.community, early.day) == ("ottawa-west", DAY)
    assert today(uow, Actor("m", "manager", ("ottawa-west",)))["requests_cancelled"] == 1


def test_every_event_type_records_only_what_its_contract_declares():
    """Every event metrics hears, at its example, makes a fact without reading a field its contract lacks."""
    uow = FakeMetricsUnitOfWork()
    counted = {event_type for event_type in HANDLERS  # these three are kept, not counted
               if event_type not in ("token.revoked", "organisation.changed", "person.monitored")}
    for event_type, version in EVENTS:
        if event_type in counted:
            deliver(uow, event(event_type))
    facts = {f.event_type: f for f in uow.facts.rows.values()}
    assert set(facts) == counted
    assert facts["volunteer.status_changed"].status == "paused"
    assert facts["volunteer.check_expiring"].status is None  # it has no status (reading one once raised)
    assert facts["task.completed"].hours == 1.5 and facts["task.completed"].support_type == "shopping"
    assert facts["sms.sent"].community is None and facts["sms.sent"].request_id is None
    assert "sms.received" not in facts and "concern.raised" not in facts  # words about people never reach metrics
    assert (facts["concern.closed"].community, facts["concern.closed"].support_type) == ("fylde-coast", "shopping")
    assert facts["request.matched"].community == "fylde-coast"  # its request's (the examples share a request)


def test_a_counted_event_whose_contract_lacks_a_field_the_measures_need_fails():
    """The fields the measures need are read without a guard, so a contract that drops one cannot go unnoticed."""
    lacking = dataclasses.replace(event("request.matched"), type="task.completed")  # as if its contract lost them
    with pytest.raises(AttributeError):
        domain.fact_of(lacking)


def test_a_rebuild_places_every_fact_again_and_says_how_many_changed():
    uow = FakeMetricsUnitOfWork()
    request_id = uuid.uuid4()
    deliver(uow, submitted(request_id), event("request.matched", request_id=str(request_id)))
    outcome = next(f for f in uow.facts.rows.values() if f.event_type == "request.matched")
    outcome.community, outcome.day = None, date(2000, 1, 1)
    uow.committed = False
    assert service_layer.rebuild(uow) == 1
    assert (outcome.community, outcome.day, uow.committed) == ("fylde-coast", DAY, True)
    assert service_layer.rebuild(uow) == 0


# --- group activities -----------------------------------------------------------------------------------------------

def test_an_activity_is_logged_in_the_coordinators_first_community_unless_another_of_theirs_is_named():
    uow = FakeMetricsUnitOfWork()
    volunteer = uuid.uuid4()
    data = {"kind": "death_cafe", "held_on": DAY, "attendance": 14, "organisation": "St Anne's Church",
            "organisation_type": "faith_group", "volunteer_ids": [volunteer]}
    logged = service_layer.log_activity(uow, COORDINATOR, dict(data), NOON).made
    assert uow.committed and uow.activities.rows == [logged]
    assert (logged.community, logged.created_by, logged.volunteer_ids, logged.created_at, logged.attendance) == (
        "fylde-coast", "co@example.org", [str(volunteer)], NOON, 14)
    elsewhere = service_layer.log_activity(uow, COORDINATOR, {**data, "community": "cheshire-east"}, NOON).made
    assert elsewhere.community == "cheshire-east"


def test_an_activity_in_another_community_is_refused_and_nothing_is_kept():
    uow = FakeMetricsUnitOfWork()
    with pytest.raises(NotYourCommunity):
        service_layer.log_activity(uow, COORDINATOR, {"kind": "death_cafe", "held_on": DAY, "attendance": 3,
                                                      "community": "ottawa-west"}, NOON)
    assert (uow.activities.rows, uow.committed) == ([], False)


# --- the counts -----------------------------------------------------------------------------------------------------

def test_each_measure_counts_the_days_facts_and_activities():
    uow = FakeMetricsUnitOfWork()
    carer, volunteers = "p_carer0000001", [uuid.uuid4() for _ in range(2)]
    shopping, bereaved, lonely = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    deliver(uow, submitted(shopping, NOON - timedelta(hours=3), person_ref=carer, is_carer=True),
            submitted(bereaved, support_type="bereavement_visit", source="social_prescriber",
                      referrer_organisation="Fylde PCN"),
            submitted(lonely, support_type="home_visit"),
            event("offer.accepted", request_id=str(shopping), volunteer_id=str(volunteers[0])),
            event("request.matched", request_id=str(shopping), volunteer_id=str(volunteers[0])),
            event("task.completed", request_id=str(shopping), volunteer_id=str(volunteers[0]), hours=1.5),
            event("task.completed", request_id=str(bereaved), volunteer_id=str(volunteers[1]), hours=2.0,
                  support_type="bereavement_visit"),
            event("request.unmatched", request_id=str(lonely)),
            event("volunteer.registered", volunteer_id=str(volunteers[0])),
            event("volunteer.registered", volunteer_id=str(volunteers[1])),
            event("volunteer.status_changed", volunteer_id=str(volunteers[1]), status="left"))
    service_layer.log_activity(uow, COORDINATOR, {"kind": "future_planning_session", "held_on": DAY,
                                                  "attendance": 9, "volunteer_ids": [volunteers[0]]}, NOON)
    measures = today(uow)
    assert {key: measures[key] for key in (
        "requests_received", "requests_matched", "requests_unmatched", "tasks_completed", "volunteer_hours",
        "active_volunteers", "people_reached", "carers_supported", "bereavement_supports", "future_planning_reached",
        "group_activities", "group_attendance", "active_partners", "volunteers_registered", "new_volunteers",
        "volunteers_left", "hours_to_acceptance_median")} == {
        "requests_received": 3, "requests_matched": 1, "requests_unmatched": 1, "tasks_completed": 2,
        "volunteer_hours": 3.5, "active_volunteers": 2, "people_reached": 2, "carers_supported": 1,
        "bereavement_supports": 1, "future_planning_reached": 9, "group_activities": 1, "group_attendance": 9,
        "active_partners": 1, "volunteers_registered": 1, "new_volunteers": 2, "volunteers_left": 1,
        "hours_to_acceptance_median": 3.0}  # people supported: the two helped, not the lonely one nobody could visit
    assert measures["requests_by_source"] == {"coordinator": 2, "social_prescriber": 1}
    assert measures["tasks_by_kind"] == {"bereavement_visit": 1, "shopping": 1}
    assert uow.published == []  # metrics publishes nothing


def test_people_supported_are_those_helped_once_each_by_a_task_done_or_signposting_not_those_who_only_asked():
    uow = FakeMetricsUnitOfWork()
    ann, bob, cy = "p_ann000000001", "p_bob000000001", "p_cy0000000001"
    first, again, pointed, waiting = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    volunteer = uuid.uuid4()
    deliver(uow, submitted(first, NOON - timedelta(hours=3), person_ref=ann, is_carer=True),
            submitted(again, NOON - timedelta(hours=2), person_ref=ann, is_carer=True),
            submitted(pointed, NOON - timedelta(hours=2), person_ref=bob),
            submitted(waiting, NOON - timedelta(hours=1), person_ref=cy),
            event("task.completed", request_id=str(first), volunteer_id=str(volunteer), hours=1.0),
            event("task.completed", request_id=str(again), volunteer_id=str(volunteer), hours=1.0),
            event("request.signposted", request_id=str(pointed), community="fylde-coast", support_type="shopping"))
    measures = today(uow)
    assert (measures["requests_received"], measures["tasks_completed"]) == (4, 2)
    # Ann (twice helped: once) and Bob (signposted); Cy asked and is still waiting. Small counts show as "<5"
    # elsewhere: these are the counts before suppression.
    assert (measures["people_reached"], measures["carers_supported"]) == (2, 1)


def test_deaths_are_counted_once_each_with_the_carers_offered_bereavement_support():
    uow = FakeMetricsUnitOfWork()
    died = event("person.died", person_ref="p_dead00000001", carers_offered=2)
    deliver(uow, died, died, event("person.died", person_ref="p_dead00000002", carers_offered=0),
            event("person.died", person_ref="p_dead00000001", carers_offered=0))  # recorded again on a merged record
    measures = today(uow, settings=Settings(suppress_below=0))
    assert (measures["deaths_recorded"], measures["bereavement_offered"]) == (2, 2)
    suppressed = today(uow, settings=Settings(suppress_below=5))  # small counts are hidden like every other
    assert isinstance(suppressed["deaths_recorded"], str) and isinstance(suppressed["bereavement_offered"], str)


def test_a_request_from_a_partner_is_counted_by_intakes_spelling_of_the_source():
    """Intake says "partner" (shared.taxonomy.SOURCES); metrics once knew only "partner_organisation"."""
    uow = FakeMetricsUnitOfWork()
    partners, coordinators = uuid.uuid4(), uuid.uuid4()
    deliver(uow, submitted(partners, source="partner", referrer_organisation="Age UK Blackpool"),
            submitted(coordinators), submitted(source="pcn"), event("request.matched", request_id=str(partners)),
            event("request.matched", request_id=str(coordinators)))
    only_partners = today(uow, source="partner")
    assert (only_partners["requests_received"], only_partners["requests_matched"]) == (1, 1)
    assert only_partners["requests_by_source"] == {"partner": 1}
    assert list(today(uow)["requests_by_source"].items()) == [("coordinator", 1), ("pcn", 1), ("partner", 1)]
    with pytest.raises(UnknownFilter):
        today(uow, source="partner_organisation")


def test_outcomes_count_only_for_requests_of_the_kind_asked_for():
    uow = FakeMetricsUnitOfWork()
    meals = uuid.uuid4()
    deliver(uow, submitted(meals, support_type="meals"), submitted(),
            event("request.cancelled", request_id=str(meals)))
    assert (today(uow, kind="meals")["requests_received"], today(uow, kind="meals")["requests_cancelled"]) == (1, 1)
    assert (today(uow, kind="shopping")["requests_received"],
            today(uow, kind="shopping")["requests_cancelled"]) == (1, 0)


def test_a_manager_sees_only_their_own_communities_counts():
    uow = FakeMetricsUnitOfWork()
    deliver(uow, submitted())
    elsewhere = Actor("m", "manager", ("cheshire-east",))
    assert today(uow, elsewhere)["requests_received"] == 0
    with pytest.raises(NotYourCommunity):
        today(uow, elsewhere, community="fylde-coast")
    assert today(uow, community="fylde-coast")["requests_received"] == 1


def test_small_counts_are_suppressed_as_the_settings_say():
    uow = FakeMetricsUnitOfWork()
    deliver(uow, *[submitted() for _ in range(3)], *[submitted(support_type="meals") for _ in range(6)])
    measures = today(uow, settings=Settings(suppress_below=5))
    assert (measures["requests_received"], measures["requests_matched"]) == (9, 0)
    assert measures["requests_by_kind"] == {"meals": "hidden", "shopping": "<5"}  # 9 - 6 would give it away
    assert today(uow, settings=Settings(suppress_below=10))["requests_received"] == "<10"


def test_each_period_has_the_period_before_beside_it_and_starts_a_year_back_by_default():
    uow = FakeMetricsUnitOfWork()
    deliver(uow, submitted(at=NOON - timedelta(days=31)), submitted())
    answer = service_layer.activity(uow, MANAGER, "month", Filters(), Settings(), DAY)
    assert (answer["from"], answer["to"], len(answer["periods"])) == (date(2025, 3, 1), DAY, 13)
    march = answer["periods"][-1]
    assert (march["start"], march["end"], march["measures"]["requests_received"],
            march["previous"]["requests_received"]) == (date(2026, 3, 1), date(2026, 3, 31), 1, 1)


def test_the_dashboard_charts_six_periods_and_falls_back_to_all_the_managers_communities():
    uow = FakeMetricsUnitOfWork()
    deliver(uow, submitted())
    answer = service_layer.dashboard(uow, MANAGER, "week", Filters(community="ottawa-west"), Settings(), DAY)
    assert answer["communities"] == ["fylde-coast"]
    assert [p["start"] for p in answer["periods"]] == [date(2026, 2, 2) + timedelta(weeks=n) for n in range(6)]
    assert answer["periods"][-1]["measures"]["requests_received"] == 1


def test_the_report_shows_the_last_whole_period_by_default_beside_the_one_before():
    uow = FakeMetricsUnitOfWork()
    deliver(uow, submitted(at=NOON - timedelta(days=31)), submitted())
    answer = service_layer.report(uow, MANAGER, "month", Filters(), Settings(), DAY)
    [february] = answer["periods"]
    assert (february["start"], february["end"], answer["before"]) == (
        date(2026, 2, 1), date(2026, 2, 28), (date(2026, 1, 1), date(2026, 1, 31)))
    assert (february["measures"]["requests_received"], february["previous"]["requests_received"]) == (1, 0)
    march = service_layer.report(uow, MANAGER, "month", Filters(end=DAY), Settings(suppress_below=5), DAY)
    assert march["periods"][0]["measures"]["requests_received"] == "<5"



# --- the baseline -----------------------------------------------------------------------------------------------------

JUNE = date(2026, 6, 30)


def test_a_baseline_shows_its_period_of_the_same_length_beside_each_period_for_its_community_only():
    uow = FakeMetricsUnitOfWork()
    april = [submitted(at=NOON.replace(month=4, day=d)) for d in (3, 9, 16)]
    deliver(uow, *april, submitted(at=NOON.replace(month=5, day=2)))
    assert service_layer.activity(uow, MANAGER, "month", Filters(), Settings(), JUNE)["baseline"] is None  # not set
    service_layer.set_baseline(uow, MANAGER, None, date(2026, 4, 17), NOON)
    assert uow.baselines.of("fylde-coast").starts_on == date(2026, 4, 17)

    def baseline(period, actor=MANAGER, **filters):
        return service_layer.activity(uow, actor, period, Filters(**filters), Settings(), JUNE)["baseline"]

    month = baseline("month")
    assert (month["start"], month["end"], month["measures"]["requests_received"]) == (
        date(2026, 4, 1), date(2026, 4, 30), 3)
    quarter = baseline("quarter")  # April to June: May's request too
    assert (quarter["start"], quarter["measures"]["requests_received"]) == (date(2026, 4, 1), 4)
    assert baseline("week")["measures"]["requests_received"] == 1  # the week of Friday 17 April: the 16th's
    # set again: it moves
    service_layer.set_baseline(uow, MANAGER, "fylde-coast", date(2026, 5, 1), NOON)
    assert baseline("month")["measures"]["requests_received"] == 1
    # a manager of two communities sees no baseline for both at once (each has its own), but each one's alone
    both = dataclasses.replace(MANAGER, communities=("fylde-coast", "cheshire-east"))
    assert baseline("month", both) is None
    assert baseline("month", both, community="fylde-coast")["start"] == date(2026, 5, 1)
    with pytest.raises(NotYourCommunity):
        service_layer.set_baseline(uow, MANAGER, "ottawa-west", date(2026, 5, 1), NOON)
    assert uow.baselines.of("ottawa-west") is None
    service_layer.remove_baseline(uow, MANAGER, None)
    assert baseline("month") is None


@pytest.mark.parametrize("day, problem", [(date(2026, 12, 1), "has happened"), (date(2010, 1, 1), "ten years")])
def test_a_baseline_is_a_period_already_counted_within_ten_years(day, problem):
    assert problem in domain.baseline_day_problem(day, date(2026, 11, 30))
    assert domain.baseline_day_problem(date(2026, 11, 30), date(2026, 11, 30)) is None


# --- partners and the register ---------------------------------------------------------------------------------------

def organisation(name, type="pcn", community="fylde-coast", adopted_on=None, merged_into=None, organisation_id=None):
    return event("organisation.changed", organisation_id=str(organisation_id or uuid.uuid4()), community=community,
                 name=name, type=type, adopted_on=adopted_on and adopted_on.isoformat(),
                 merged_into=merged_into and str(merged_into))


@pytest.mark.parametrize("one, other", [("St Anne's Church", "st annes church"),
                                        ("Age UK - Blackpool", "Age UK Blackpool"),
                                        ("The Fylde PCN", "Fylde PCN"), ("Marsh & Co", "Marsh and Co")])
def test_an_organisation_spelled_two_ways_is_one_name(one, other):
    assert domain.name_key(one) == domain.name_key(other)
    assert domain.name_key("Fylde PCN") != domain.name_key("Fylde Coast PCN")


def test_partners_are_counted_by_registered_organisation_and_type_and_a_merged_duplicate_counts_once():
    uow = FakeMetricsUnitOfWork()
    pcn, duplicate = uuid.uuid4(), uuid.uuid4()
    deliver(uow, organisation("Fylde Coast PCN", organisation_id=pcn, adopted_on=date(2026, 1, 5)),
            organisation("Fylde Coast Primary Care Network", organisation_id=duplicate),
            organisation("Trinity Hospice", type="hospice", adopted_on=date(2026, 3, 20)),
            organisation("Fylde PCN", community="ottawa-west", adopted_on=date(2026, 1, 1)),  # another community's
            submitted(source="pcn", referrer_organisation="fylde coast pcn"),
            submitted(source="pcn", referrer_organisation="Fylde Coast Primary Care Network"),
            submitted(source="partner", referrer_organisation="Trinity Hospice"))
    service_layer.log_activity(uow, COORDINATOR, {"kind": "death_cafe", "held_on": DAY, "attendance": 9,
                                                  "organisation": "St Anne's", "organisation_type": "faith_group"},
                               NOON)
    before = today(uow)
    assert (before["active_partners"], before["partners_by_type"]) == (
        4, {"faith_group": 1, "hospice": 1, "pcn": 2})  # the two PCN entries are two until merged
    assert before["providers_adopting"] == 1  # by 10 March: the PCN; the hospice adopts on the 20th
    deliver(uow, organisation("Fylde Coast Primary Care Network", organisation_id=duplicate, merged_into=pcn))
    after = today(uow)
    assert (after["active_partners"], after["partners_by_type"]) == (3, {"faith_group": 1, "hospice": 1, "pcn": 1})
    # a late copy of the duplicate's earlier change does not undo the merge
    deliver(uow, organisation("Fylde Coast Primary Care Network", organisation_id=duplicate))
    assert today(uow)["active_partners"] == 3
    later = service_layer.activity(uow, MANAGER, "day", Filters(), Settings(), date(2026, 3, 21))["periods"][-1]
    assert later["measures"]["providers_adopting"] == 2


def test_bereavement_support_after_a_death_is_taken_up_when_released_to_volunteers_not_when_closed_unasked():
    uow = FakeMetricsUnitOfWork()
    deliver(uow, event("person.died", person_ref="p_dead00000001", carers_offered=2),
            submitted(support_type="bereavement_visit", follows_a_death=True, is_carer=True),
            submitted(support_type="bereavement_visit", follows_a_death=True, is_carer=True, closed=True),  # declined
            submitted(support_type="bereavement_visit"))  # bereavement support asked for otherwise
    measures = today(uow)
    assert (measures["bereavement_offered"], measures["bereavement_taken_up"]) == (2, 1)


# --- group activities' volunteers and hours, and the value of volunteer time ------------------------------------------

def test_an_activitys_volunteers_hours_count_in_volunteer_hours_and_go_to_matching_once():
    uow = FakeMetricsUnitOfWork()
    sam, ana, helper = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    done = uuid.uuid4()
    deliver(uow, submitted(done), event("task.completed", request_id=str(done), hours=2.0))
    logged = service_layer.log_activity(uow, COORDINATOR, {
        "kind": "death_cafe", "held_on": DAY, "attendance": 12, "volunteer_ids": [helper],
        "volunteers": [{"volunteer_id": sam, "hours": 2.5}, {"volunteer_id": ana, "hours": 1.5}]}, NOON).made
    assert logged.hours == 4.0 and set(logged.volunteer_ids) == {str(helper), str(sam), str(ana)}
    (published,) = uow.events(ActivityLogged)
    assert (published.activity_id, published.community, published.kind, published.source) == (
        logged.id, "fylde-coast", "death_cafe", "activity")
    assert {(v.volunteer_id, v.hours) for v in published.volunteers} == {(sam, 2.5), (ana, 1.5)}  # ids, no names
    measures = today(uow)
    assert measures["volunteer_hours"] == 6.0  # the task's 2 and the activity's 4
    assert measures["active_volunteers"] == 4  # the task's volunteer, and the three who ran the activity
    assert measures["volunteer_time_value"] == {"GBP": 90.0}  # communities.json: £15 an hour for Fylde Coast
    # with a kind of help asked for, an activity's hours (given to no request) are not that kind's
    assert today(uow, kind="shopping")["volunteer_hours"] == 2.0


def test_an_activity_without_hours_publishes_nothing():
    uow = FakeMetricsUnitOfWork()
    service_layer.log_activity(uow, COORDINATOR, {"kind": "death_cafe", "held_on": DAY, "attendance": 3,
                                                  "volunteer_ids": [uuid.uuid4()]}, NOON)
    assert uow.committed and uow.events(ActivityLogged) == []


def test_the_value_of_volunteer_time_is_the_periods_hours_at_the_value_in_effect_on_its_last_day():
    uow = FakeMetricsUnitOfWork()
    done = uuid.uuid4()
    deliver(uow, submitted(done), event("task.completed", request_id=str(done), hours=10.0))
    assert today(uow)["volunteer_time_value"] == {"GBP": 150.0}
    later = service_layer.set_hourly_value(uow, MANAGER, None, 20.0, "GBP", DAY + timedelta(days=1), NOON)
    assert today(uow)["volunteer_time_value"] == {"GBP": 150.0}  # from tomorrow: today is valued as before
    service_layer.set_hourly_value(uow, MANAGER, None, 18.5, "GBP", DAY - timedelta(days=30), NOON)
    assert today(uow)["volunteer_time_value"] == {"GBP": 185.0}
    kept = service_layer.hourly_values_of(uow, MANAGER, None, DAY + timedelta(days=1))
    assert (kept["amount"], kept["currency"], kept["changes"][-1].set_by) == (20.0, "GBP", "manager@example.org")
    assert later in kept["changes"] and len(kept["changes"]) == 2  # every change kept, with who made it
    with pytest.raises(NotYourCommunity):
        service_layer.set_hourly_value(uow, MANAGER, "ottawa-west", 30.0, "CAD", DAY, NOON)


def test_communities_in_two_countries_are_valued_each_in_its_own_currency():
    uow = FakeMetricsUnitOfWork()
    both = Actor(subject="admin@example.org", role="admin", communities=("fylde-coast", "ottawa-west"))
    here, there = uuid.uuid4(), uuid.uuid4()
    deliver(uow, submitted(here), event("task.completed", request_id=str(here), hours=2.0),
            submitted(there, community="ottawa-west"),
            event("task.completed", request_id=str(there), community="ottawa-west", hours=3.0))
    assert today(uow, actor=both)["volunteer_time_value"] == {"CAD": 81.0, "GBP": 30.0}
    assert domain.money_text({"CAD": 81.0, "GBP": 1234.4}) == "CA$81 + £1,234"
    assert domain.money_text({}) == "—"


def test_check_ins_sent_and_answered_are_counted_with_their_scores_and_no_one_named():
    uow = FakeMetricsUnitOfWork()
    deliver(uow, *(event("wellbeing.prompted", checkin_id=str(uuid.uuid4())) for _ in range(4)))
    answers = [event("wellbeing.answered", checkin_id=str(uuid.uuid4()), score=score, talk=False)
               for score in (5, 4, 4)] + [event("wellbeing.answered", checkin_id=str(uuid.uuid4()), score=None,
                                                talk=True)]
    deliver(uow, *answers, answers[0])  # a redelivery counts once
    measures = today(uow)
    assert (measures["wellbeing_prompted"], measures["wellbeing_answered"], measures["wellbeing_talk"]) == (4, 3, 1)
    assert measures["wellbeing_scores"] == {"4": 2, "5": 1}
    assert all(fact.volunteer_id is None for fact in uow.facts.rows.values()
               if fact.event_type == "wellbeing.answered")
