"""The dashboard as people read it: times in minutes, hours and days, the match rate (never worked out from a
suppressed count), a period only partly over marked, every measure under one heading, and group activities counted
kind by kind."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest

from services.metrics import domain
from services.metrics.domain import HIDDEN, Activity, Fact, duration_words, match_rate, so_far
from services.metrics.entrypoints.pages import GROUPS, tile_text


@pytest.mark.parametrize("hours, words", [
    (None, "—"), (0.004, "under a minute"), (1 / 60, "1 minute"), (0.01, "1 minute"), (40 / 60, "40 minutes"),
    (59.4 / 60, "59 minutes"), (1, "1 hour"), (3 + 20 / 60, "3 hours 20 minutes"), (1 + 1 / 60, "1 hour 1 minute"),
    (47.5, "47 hours 30 minutes"), (48, "2 days"), (24 * 3 + 5, "3 days 5 hours"), (25 * 24 + 1, "25 days 1 hour"),
])
def test_a_time_reads_as_a_person_writes_it(hours, words):
    assert duration_words(hours) == words


def test_the_time_tiles_use_words_and_the_rate_a_percent_sign():
    assert tile_text("hours_to_acceptance_median", 0.01) == "1 minute"
    assert tile_text("hours_to_acceptance_p90", None) == "—"
    assert tile_text("match_rate", 92) == "92%" and tile_text("match_rate", "not shown") == "not shown"
    assert tile_text("requests_received", "<5") == "<5" and tile_text("volunteer_hours", 15.5) == "15.5"
    assert tile_text("volunteer_hours", 19.0) == "19" and tile_text("volunteer_time_value", {"GBP": 285.0}) == "£285"


@pytest.mark.parametrize("matched, decided, below, shown", [
    (0, 0, 5, None), (10, 15, 5, 67), (30, 40, 5, 75), (20, 20, 5, 100), (0, 8, 5, 0),
    (3, 12, 5, "not shown"),  # the matched are a small count
    (11, 12, 5, "not shown"),  # one unmatched would follow from the rate and the count matched
    (3, 3, 5, "not shown"), (3, 3, 0, 100), (2, 3, 0, 67),
])
def test_the_match_rate_is_a_percentage_unless_a_part_is_a_small_count(matched, decided, below, shown):
    assert match_rate(matched, decided, below) == shown


def fact(event_type: str, request: uuid.UUID, day: date) -> Fact:
    return Fact(event_id=uuid.uuid4(), event_type=event_type, day=day, community="fylde-coast", request_id=request,
                occurred_at=datetime.combine(day, datetime.min.time(), timezone.utc), person_ref=f"p{request.hex[:6]}")


def test_the_match_rate_counts_the_requests_received_that_have_had_an_outcome():
    """Matched (even after once finding no one) or unmatched; a request still open or cancelled has no outcome."""
    day = date(2026, 3, 2)
    matched, late, unmatched, waiting = (uuid.uuid4() for _ in range(4))
    facts = [fact("request.submitted", r, day) for r in (matched, late, unmatched, waiting)]
    history = facts + [fact("request.matched", matched, day), fact("request.unmatched", late, day),
                       fact("request.matched", late, day + timedelta(days=3)),
                       fact("request.unmatched", unmatched, day)]
    values = domain.measures(facts, [], volunteer_changes=[], history=history)
    assert values["match_rate"] == (2, 3)
    assert domain.shown(values, 0)["match_rate"] == 67 and domain.shown(values, 5)["match_rate"] == "not shown"


def test_a_period_only_partly_over_is_marked():
    march = (date(2026, 3, 1), date(2026, 3, 31))
    assert so_far(*march, date(2026, 3, 7)) == "so far: 7 of 31 days"
    assert so_far(*march, date(2026, 3, 1)) == "so far: 1 of 31 days"
    assert so_far(*march, date(2026, 3, 31)) is None and so_far(*march, date(2026, 4, 2)) is None
    assert so_far(*march, date(2026, 2, 27)) is None


def test_every_measure_is_under_exactly_one_heading():
    keys = [key for _, group in GROUPS for key in group]
    assert sorted(keys) == sorted(m.key for m in domain.MEASURES)
    assert [heading for heading, _ in GROUPS] == ["Requests for support", "How quickly help comes",
                                                  "People supported", "Volunteers", "Volunteers' wellbeing",
                                                  "Activities and education", "Partnerships", "Safeguarding",
                                                  "Carer wellbeing", "Survey of service users and bereaved people"]


def activity(kind: str, attendance: int) -> Activity:
    return Activity(id=uuid.uuid4(), community="fylde-coast", kind=kind, held_on=date(2026, 3, 2),
                    attendance=attendance, created_by="co", created_at=datetime(2026, 3, 2, tzinfo=timezone.utc))


def test_each_kind_of_group_activity_is_counted_on_its_own_with_its_attendance():
    assert {"dying_matters_event", "future_planning_session", "grief_cafe", "death_cafe", "bereavement_group",
            "public_training"} <= set(domain.ACTIVITY_KINDS)
    done = ([activity("dying_matters_event", 40)] * 6 + [activity("grief_cafe", 8)] * 3
            + [activity("public_training", 3)])
    values = domain.measures([], done, volunteer_changes=[], history=[])
    assert values["activities_by_kind"] == {"dying_matters_event": 6, "grief_cafe": 3, "public_training": 1}
    assert values["attendance_by_kind"] == {"dying_matters_event": 240, "grief_cafe": 24, "public_training": 3}
    published = domain.shown(values, 5)
    # two small kinds beside a shown total of 10: 10 - 6 = 4 does not tell which is which
    assert (published["group_activities"], published["activities_by_kind"]) == (
        10, {"dying_matters_event": 6, "grief_cafe": "<5", "public_training": "<5"})
    # 3 people at one training would be 267 - 240 - 24: one more is hidden, and the total stays
    assert published["group_attendance"] == 267 and published["attendance_by_kind"] == {
        "dying_matters_event": 240, "grief_cafe": HIDDEN, "public_training": "<5"}


def test_a_single_small_kind_of_activity_beside_its_total_hides_another():
    values = {"group_activities": 9, "activities_by_kind": {"death_cafe": 2, "bereavement_group": 7}}
    assert domain.shown(values, 5) == {"group_activities": 9,
                                       "activities_by_kind": {"death_cafe": "<5", "bereavement_group": HIDDEN}}
