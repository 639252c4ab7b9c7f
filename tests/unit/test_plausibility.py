"""What is plausible, by table: each service's rules for dates, and the fields every schema reads text, booleans and
numbers with (shared/web.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from marshmallow import Schema, ValidationError

from services.intake.domain import birth_date_problem, window_problems
from services.matching.domain import check_problems, time_away_problems
from services.metrics.domain import activity_day_problem
from shared.web import Boolean, Float, Integer, QueryBoolean, Text, text_problem, unstorable

NOW = datetime(2026, 12, 1, 11, 0, tzinfo=timezone.utc)
TODAY = NOW.date()


def at(day: str, hour: int = 14) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00")


@pytest.mark.parametrize("start, end, problems", [
    (at("2026-12-07"), at("2026-12-07", 16), {}),
    (at("2026-11-30", 0), at("2026-11-30", 2), {}),  # from yesterday
    (at("2026-11-29", 23), at("2026-11-30", 1), {"start": "Must not be before yesterday (2026-11-30)."}),
    (at("1900-01-08"), at("1900-01-08", 16), {"start": "Must not be before yesterday (2026-11-30)."}),
    (at("9999-01-04"), at("9999-01-04", 16), {"end": "Must be at most a year ahead."}),
    (at("2027-12-01", 9), at("2027-12-01", 10), {}),  # a year ahead
    (at("2027-12-02"), at("2027-12-02", 16), {"end": "Must be at most a year ahead."}),
    (at("2026-12-07"), at("2027-01-07"), {}),  # 31 days
    (at("2026-12-07"), at("2027-01-07", 15), {"end": "Must be at most 31 days after start; ask for longer help as a "
                                                     "recurring request (repeat)."}),
    (at("2026-12-07"), at("2028-01-11"), {"end": "Must be at most 31 days after start; ask for longer help as a "
                                                 "recurring request (repeat)."}),  # 400 days
    (at("2026-12-07"), at("2026-12-07"), {"end": "Must be after start."}),
    (datetime.fromisoformat("2026-12-07T14:00:00+14:00"), datetime.fromisoformat("2026-12-07T01:00:00-12:00"), {}),
])
def test_a_one_off_window_is_from_yesterday_to_a_year_ahead_and_at_most_31_days(start, end, problems):
    assert window_problems(start, end, NOW) == problems


@pytest.mark.parametrize("born, problem", [
    (date(1948, 3, 2), None), (date(1900, 1, 1), None), (TODAY - timedelta(days=1), None),
    (TODAY, "Must be in the past."), (date(2030, 1, 1), "Must be in the past."),
    (date(1899, 12, 31), "Must not be before 1900-01-01."), (date(1, 1, 1), "Must not be before 1900-01-01."),
])
def test_a_date_of_birth_is_in_the_past_and_not_before_1900(born, problem):
    assert birth_date_problem(born, TODAY) == problem


@pytest.mark.parametrize("done_on, expires_on, problems", [
    (date(2026, 1, 5), date(2035, 1, 5), {}),
    (date(2026, 1, 5), None, {}),
    (TODAY, None, {}),
    (TODAY + timedelta(days=1), None, {"done_on": "Must not be in the future: record a check once it is done."}),
    (date(1, 1, 1), None, {"done_on": "Must not be before 1900-01-01."}),
    (date(2026, 1, 5), date(2026, 1, 5), {"expires_on": "Must be after done_on."}),
    (date(2026, 1, 5), date(2036, 1, 6), {"expires_on": "Must be at most ten years after done_on."}),
    (date(9999, 12, 31), date(9999, 12, 31), {"done_on": "Must not be in the future: record a check once it is done.",
                                              "expires_on": "Must be after done_on."}),
])
def test_a_check_was_done_by_today_and_expires_after_within_ten_years(done_on, expires_on, problems):
    assert check_problems(done_on, expires_on, TODAY) == problems


@pytest.mark.parametrize("starts_on, ends_on, problems", [
    (date(2027, 8, 1), date(2027, 8, 14), {}),
    (TODAY - timedelta(days=365), TODAY, {}),
    (TODAY - timedelta(days=366), TODAY, {"starts_on": "Must be at most a year ago."}),
    (TODAY, TODAY + timedelta(days=366), {"ends_on": "Must be at most a year ahead."}),
    (date(2027, 8, 14), date(2027, 8, 1), {"ends_on": "Must not be before starts_on."}),
    (date(1, 1, 1), date(9999, 12, 31), {"starts_on": "Must be at most a year ago.",
                                         "ends_on": "Must be at most a year ahead."}),
])
def test_time_away_is_in_order_from_a_year_ago_to_a_year_ahead(starts_on, ends_on, problems):
    assert time_away_problems(starts_on, ends_on, TODAY) == problems


@pytest.mark.parametrize("day, problem", [
    (TODAY, None), (TODAY + timedelta(days=1), None), (TODAY - timedelta(days=366), None),
    (TODAY + timedelta(days=2), "Log an activity once it has happened."),
    (TODAY - timedelta(days=367), "Must be at most a year ago."), (date(1, 1, 1), "Must be at most a year ago."),
])
def test_an_activity_is_logged_once_it_has_happened_within_a_year(day, problem):
    assert activity_day_problem(day, TODAY) == problem


class Person(Schema):
    name = Text(required=True, blank=False)
    notes = Text(multiline=True)
    carer = Boolean()
    visits = Integer()
    latitude = Float()


@pytest.mark.parametrize("given, loaded", [
    ({"name": "  Pat Example "}, {"name": "Pat Example"}),
    ({"name": "Zoë Ó Briain", "notes": "Key with\tneighbour.\r\nRing twice."},
     {"name": "Zoë Ó Briain", "notes": "Key with\tneighbour.\r\nRing twice."}),
    ({"name": "Pat", "notes": "   "}, {"name": "Pat", "notes": ""}),
    ({"name": "Pat", "carer": False, "visits": 3, "latitude": 53}, {"name": "Pat", "carer": False, "visits": 3,
                                                                   "latitude": 53.0}),
])
def test_text_is_trimmed_and_json_types_are_taken_as_they_are(given, loaded):
    assert Person().load(given) == loaded


@pytest.mark.parametrize("given, field, message", [
    ({"name": "   "}, "name", "Must not be blank."),
    ({"name": ""}, "name", "Must not be blank."),
    ({"name": "Pat\x00"}, "name", "Must not contain a NUL character."),
    ({"name": "Pat\nExample"}, "name", "Must be one line, without control characters."),
    ({"name": "Pat\x1b[31m"}, "name", "Must be one line, without control characters."),
    ({"name": "Pat \ud800"}, "name",
     "Is not valid text: it has a lone surrogate, which cannot be encoded as UTF-8."),
    ({"name": "Pat", "notes": "bell\x07"}, "notes", "Must not contain control characters."),
    ({"name": "Pat", "carer": "yes"}, "carer", "Must be true or false (a JSON boolean)."),
    ({"name": "Pat", "carer": "true"}, "carer", "Must be true or false (a JSON boolean)."),
    ({"name": "Pat", "carer": 1}, "carer", "Must be true or false (a JSON boolean)."),
    ({"name": "Pat", "visits": 2.5}, "visits", "Not a valid integer."),
    ({"name": "Pat", "visits": "3"}, "visits", "Not a valid integer."),
    ({"name": "Pat", "visits": True}, "visits", "Not a valid integer."),
    ({"name": "Pat", "latitude": "53.8"}, "latitude", "Not a valid number."),
    ({"name": "Pat", "latitude": True}, "latitude", "Not a valid number."),
])
def test_what_a_field_refuses_it_names_clearly(given, field, message):
    with pytest.raises(ValidationError) as refused:
        Person().load(given)
    assert refused.value.messages == {field: [message]}


def test_text_fields_state_their_rule_as_a_pattern_the_document_carries():
    import re

    single, multiline = Person().fields["name"].metadata["pattern"], Person().fields["notes"].metadata["pattern"]
    assert re.match(single, "Pat Example") and not re.match(single, "   ") and not re.match(single, "Pat\nE")
    assert re.match(multiline, "a\nb") and re.match(multiline, "") and not re.match(multiline, "a\x00b")


def test_a_query_boolean_is_true_or_false_and_nothing_else():
    class Query(Schema):
        skip = QueryBoolean()

    assert Query().load({"skip": "true"}) == {"skip": True} and Query().load({"skip": "false"}) == {"skip": False}
    for spelling in ("yes", "1", "True", "on"):
        with pytest.raises(ValidationError):
            Query().load({"skip": spelling})


def test_text_that_cannot_be_stored_is_found_wherever_it_is():
    assert text_problem("Pat") is None
    assert unstorable({"a": ["fine", {"b\x00": "x", "c": "\udfff"}], "d/e": "\x00"}) == [
        ("/a/1/b\x00", "The member's name: must not contain a NUL character."),
        ("/a/1/c", "Is not valid text: it has a lone surrogate, which cannot be encoded as UTF-8."),
        ("/d~1e", "Must not contain a NUL character.")]
