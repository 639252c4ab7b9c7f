"""Matching's rules as plain functions: each eligibility rule, the ranking, and the explanation."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from services.matching.domain import (Facts, HeldTask, MatchRequest, Policy, distance_km, exclusion, explain, facts_for,
                                      rank, task_slots)

LONDON = ZoneInfo("Europe/London")
TASK = datetime(2030, 1, 9, 14, tzinfo=timezone.utc)  # a Wednesday afternoon
MONDAY = date(2030, 1, 7)


def check(name, done=date(2029, 1, 1), expires=date(2031, 1, 1)):
    return SimpleNamespace(check=name, done_on=done, expires_on=expires)


def volunteer(**changes):
    fields = dict(id=uuid.uuid4(), name="Sam", status="active", sms_opted_out_at=None, skills=["practical", "bereavement"],
                  checks=[check("safeguarding"), check("criminal_record"), check("bereavement_training")],
                  time_away=[], availability=[], max_distance_km=10.0, languages=["en"], gender="female",
                  weekly_cap=2)
    return SimpleNamespace(**{**fields, **changes})


def request(**changes):
    fields = dict(support_type="shopping", window_start=TASK, window_end=TASK + timedelta(hours=2), window_days=None,
                  window_part=None, volunteer_language=None, volunteer_gender=None)
    return SimpleNamespace(**{**fields, **changes})


def rule_for(v=None, r=None, facts=None, today=date(2030, 1, 1)):
    r = r or request()
    return exclusion(v or volunteer(), r, facts or Facts(distance_km=2.0), task_slots(r, LONDON, today), Policy())


def test_a_volunteer_who_meets_every_rule_may_be_asked():
    assert rule_for() is None


@pytest.mark.parametrize("changes, request_changes, facts, rule", [
    ({"status": "paused"}, {}, None, "status"),
    ({"status": "left"}, {}, None, "status"),
    ({"sms_opted_out_at": datetime(2029, 5, 1, tzinfo=timezone.utc)}, {}, None, "sms"),
    ({"skills": ["companionship"]}, {}, None, "skill"),
    ({"checks": []}, {}, None, "check:safeguarding"),
    ({"checks": [check("safeguarding", expires=date(2030, 1, 8))]}, {}, None, "check:safeguarding"),
    ({"checks": [check("safeguarding", done=date(2030, 1, 10))]}, {}, None, "check:safeguarding"),
    ({"checks": [check("safeguarding")]}, {"support_type": "bereavement_visit"}, None, "check:criminal_record"),
    ({"checks": [check("safeguarding"), check("criminal_record")]}, {"support_type": "bereavement_visit"}, None,
     "check:bereavement_training"),
    ({"time_away": [SimpleNamespace(starts_on=date(2030, 1, 8), ends_on=date(2030, 1, 12))]}, {}, None, "away"),
    ({"availability": ["wed:morning", "thu:afternoon"]}, {}, None, "availability"),
    ({}, {}, Facts(distance_km=10.5), "too_far"),
    ({"max_distance_km": 50.0}, {}, Facts(distance_km=16.0), "too_far"),  # beyond the request's 15 km
    ({}, {"volunteer_language": "pl"}, None, "language"),
    ({}, {"volunteer_gender": "male"}, None, "gender"),
    ({}, {}, Facts(distance_km=1.0, tasks_in_week={MONDAY: 2}), "weekly_cap"),
    ({}, {}, Facts(distance_km=1.0, asked=True), "already_asked"),
])
def test_each_rule_rules_a_volunteer_out(changes, request_changes, facts, rule):
    assert rule_for(volunteer(**changes), request(**request_changes), facts) == rule


@pytest.mark.parametrize("changes, request_changes, facts", [
    ({"checks": [check("safeguarding", expires=None)]}, {}, None),  # a check that does not expire
    ({"checks": [check("safeguarding", expires=date(2030, 1, 9))]}, {}, None),  # valid on the day itself
    ({"availability": ["wed:afternoon"]}, {}, None),
    ({"max_distance_km": 10.0}, {}, Facts(distance_km=10.0)),  # exactly at their limit
    ({"languages": ["en", "pl"]}, {"volunteer_language": "pl"}, None),
    ({}, {}, Facts(distance_km=1.0, tasks_in_week={MONDAY: 1})),  # under the cap
    ({}, {}, Facts(distance_km=1.0, tasks_in_week={MONDAY - timedelta(days=7): 5})),  # a full week, but not this one
    ({"time_away": [SimpleNamespace(starts_on=date(2030, 1, 1), ends_on=date(2030, 1, 8))]}, {}, None),
])
def test_the_edges_of_each_rule_let_a_volunteer_through(changes, request_changes, facts):
    assert rule_for(volunteer(**changes), request(**request_changes), facts) is None


def test_each_task_of_a_recurring_request_counts_in_the_week_of_its_own_occurrence():
    sam = volunteer()
    fortnightly = dict(window_start=TASK, person_ref="", request_occurrence=3, repeat_every_weeks=2)
    held = [HeldTask(sam.id, None, occurrence=n, **fortnightly) for n in (1, 2, 3)]
    held.append(HeldTask(sam.id, TASK + timedelta(days=1), None, "", 1, 1, None))  # no window: when accepted
    facts = facts_for(MatchRequest(), [(sam, 1.0)], {}, held, TASK)
    assert facts[sam.id].tasks_in_week == {MONDAY - timedelta(weeks=4): 1, MONDAY - timedelta(weeks=2): 1,
                                           MONDAY: 2}
    assert rule_for(sam, facts=facts[sam.id]) == "weekly_cap"  # two this week, and their cap is two


def test_a_flexible_window_needs_only_one_day_the_volunteer_can_do():
    weekdays = request(window_start=None, window_end=None, window_days=["mon", "wed"], window_part="afternoon")
    slots = task_slots(weekdays, LONDON, date(2030, 1, 5))  # a Saturday: next Monday and Wednesday
    assert slots == [(date(2030, 1, 7), "afternoon"), (date(2030, 1, 9), "afternoon")]
    away_monday = [SimpleNamespace(starts_on=date(2030, 1, 7), ends_on=date(2030, 1, 7))]
    assert rule_for(volunteer(time_away=away_monday), weekdays, today=date(2030, 1, 5)) is None
    assert rule_for(volunteer(availability=["mon:afternoon"], time_away=away_monday), weekdays,
                    today=date(2030, 1, 5)) == "availability"


def test_a_one_off_window_is_read_in_the_communitys_time_zone():
    late = request(window_start=datetime(2030, 7, 1, 16, 30, tzinfo=timezone.utc))  # 17:30 in London in summer
    assert task_slots(late, LONDON, date(2030, 6, 1)) == [(date(2030, 7, 1), "evening")]


def test_ranking_puts_the_nearest_first_then_spreads_the_work_and_prefers_someone_known():
    near, busy, known, far = (volunteer(name=n) for n in ("Near", "Busy", "Known", "Far"))
    ranked = rank([(far, Facts(distance_km=9.0)), (busy, Facts(distance_km=1.0, recent_load=3)),
                   (near, Facts(distance_km=2.0)), (known, Facts(distance_km=8.0, helped_before=True))], Policy())
    assert [c.volunteer.name for c in ranked] == ["Known", "Near", "Busy", "Far"]
    assert ranked[0].reasons == ("8.0 km away", "0 offers or tasks in 28 days", "has helped this person before")
    assert ranked[2].score == pytest.approx(1.0 + 3 * Policy().fairness_km)


def test_ties_go_by_name_so_the_order_is_stable():
    ranked = rank([(volunteer(name="Bo"), Facts(distance_km=3.0)), (volunteer(name="Al"), Facts(distance_km=3.0))],
                  Policy())
    assert [c.volunteer.name for c in ranked] == ["Al", "Bo"]


def test_the_explanation_counts_each_rule_largest_first():
    assert explain(Counter({"check:bereavement_training": 3, "too_far": 12, "status": 1})) == (
        "12 too far, 3 without bereavement-support training in date, 1 paused or left")
    assert explain(Counter()) == "no volunteers are registered in this community"


def test_distance_between_blackpool_and_kendal_is_about_60_km():
    # equirectangular by hand: 0.5138 deg north = 57.13 km, 0.3043 deg east at 54.07N = 19.88 km
    assert distance_km(53.8142, -3.0503, 54.3280, -2.7460) == pytest.approx(60.49, abs=0.3)


# --- which task a volunteer's concern is about ---------------------------------------------------------------------

def test_a_concern_is_about_the_task_with_its_code_or_each_current_or_recent_one_once_per_request():
    from services.matching.domain import CONCERN_RECENT, Offer, concern_id, concern_tasks

    now = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
    me, weekly, other, old = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def task(request, code, status, days_ago, done_days_ago=None):
        return Offer(request_id=request, volunteer_id=me, code=code, status=status,
                     answered_at=now - timedelta(days=days_ago),
                     completed_at=None if done_days_ago is None else now - timedelta(days=done_days_ago))

    first_week = task(weekly, "1111", "completed", 9, done_days_ago=8)
    this_week = task(weekly, "2222", "accepted", 2)
    long_ago = task(old, "3333", "completed", 40, done_days_ago=CONCERN_RECENT.days + 1)
    recent = task(other, "4444", "completed", 5, done_days_ago=4)
    tasks = [first_week, this_week, long_ago, recent]
    assert concern_tasks(tasks, now) == [this_week, recent]  # one per request, latest first; not the old one
    assert concern_tasks(tasks, now, "3333") == [long_ago]  # with its code, however long ago
    assert concern_tasks(tasks, now, "9999") == []
    assert concern_tasks([this_week, long_ago], now) == [this_week]
    assert concern_id("SM1") == concern_id("SM1") != concern_id("SM2")  # the same text is the same concern


# --- an applicant's stages ---------------------------------------------------------------------------------------

def an_applicant(stage: str = "applied"):
    from services.matching.domain import Applicant

    at = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
    return Applicant(community="fylde-coast", name="Ada", phone="+447911123481", postcode="FY1 1AA",
                     kinds=["shopping", "meals", "other"], applied_at=at, stage_since=at, stage=stage)


@pytest.mark.parametrize("stage, to", [("applied", "contacted"), ("contacted", "checks"), ("checks", "training"),
                                       ("training", "approved")])
def test_an_applicant_moves_on_one_stage_at_a_time(stage, to):
    applicant = an_applicant(stage)
    now = applicant.stage_since + timedelta(days=3)
    change = applicant.move(to, now, "coordinator@example.org", "coordinator")
    assert (applicant.stage, applicant.stage_since, change.previous, change.stage) == (to, now, stage, to)


@pytest.mark.parametrize("stage, to", [("applied", "checks"), ("applied", "approved"), ("training", "contacted"),
                                       ("approved", "declined"), ("declined", "contacted"), ("withdrawn", "declined")])
def test_an_applicant_skipping_going_back_or_moving_after_leaving_is_refused(stage, to):
    from services.matching.domain import Conflict

    applicant = an_applicant(stage)
    with pytest.raises(Conflict):
        applicant.move(to, applicant.stage_since, "c", "coordinator", "a reason")
    assert applicant.stage == stage and applicant.history == []


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_withdrawn_or_declined_needs_a_reason(reason):
    applicant = an_applicant("checks")
    with pytest.raises(ValueError):
        applicant.move("declined", applicant.stage_since, "c", "coordinator", reason)
    applicant.move("withdrawn", applicant.stage_since, "c", "coordinator", " Moved away ")
    assert (applicant.stage, applicant.reason, applicant.open) == ("withdrawn", "Moved away", False)


def test_waiting_too_long_is_longer_than_the_communitys_days_at_one_open_stage():
    applicant = an_applicant()
    assert not applicant.waiting_too_long(applicant.stage_since + timedelta(days=14), 14)
    assert applicant.waiting_too_long(applicant.stage_since + timedelta(days=14, minutes=1), 14)
    applicant.move("declined", applicant.stage_since, "c", "coordinator", "no")
    assert not applicant.waiting_too_long(applicant.stage_since + timedelta(days=30), 14)
    assert an_applicant().skills() == ["cooking", "practical"]  # "other" is never offered: no skill
