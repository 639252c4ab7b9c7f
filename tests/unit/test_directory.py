"""The signposting directory's pure rules: what kinds of help an Open Referral service's words name, how its
schedule reads, the shapes a file of services comes in, the problems named by place, and nearest first."""

from __future__ import annotations

import json

import pytest

from services.intake.directory import (DirectoryEntry, DirectoryProblem, kinds_in, nearest, read_csv, read_file,
                                       read_oruk, schedule_text, services_in, template_csv)
from services.intake.domain import NotOpen, NotSignpostable, SupportRequest


@pytest.mark.parametrize("words, kinds", [
    ("Befriending", ["home_visit", "phone_check_in"]),
    ("Bereavement support ; Grief", ["bereavement_visit", "bereavement_group"]),
    ("Carers' respite sitting service", ["carer_respite"]),
    ("Community transport", ["transport"]),
    ("Lunch club", ["meals"]),
    ("Debt advice", []),
])
def test_an_oruk_services_words_name_the_kinds_of_help(words, kinds):
    assert kinds_in(words) == kinds


def test_the_first_text_that_names_a_kind_decides():
    assert kinds_in("Money advice", "Telephone befriending") == ["home_visit", "phone_check_in"]
    assert kinds_in("Transport", "Telephone befriending") == ["transport"]


def test_a_schedule_reads_as_its_description_or_its_days_and_hours():
    assert schedule_text({"byday": "MO,WE", "opens_at": "09:30:00", "closes_at": "12:00:00"}) == "Mon, Wed 09:30-12:00"
    assert schedule_text({"description": "First Friday of the month", "byday": "FR"}) == "First Friday of the month"


@pytest.mark.parametrize("document", [
    {"totalElements": 1, "content": [{"name": "A"}]},  # ORUK v1's page
    {"total_items": 1, "contents": [{"name": "A"}]},  # HSDS 3's page
    [{"name": "A"}],
    {"name": "A"},
])
def test_a_file_of_services_comes_as_a_page_a_list_or_one(document):
    assert services_in(document) == [{"name": "A"}]


def test_json_that_holds_no_services_or_is_not_json_is_refused_whole():
    with pytest.raises(DirectoryProblem, match="no services"):
        services_in({"error": "forbidden"})
    with pytest.raises(DirectoryProblem, match="not JSON"):
        read_oruk(b"{not json")


def test_each_problem_of_a_service_is_named_by_its_place_and_field():
    sheet = read_oruk(json.dumps([
        {"name": "", "service_taxonomys": [{"taxonomy": {"name": "Befriending"}}]},
        {"name": "Lift scheme", "kinds": ["lifts"]},
        {"name": "Meals on wheels", "service_at_locations": [{"location": {"latitude": 95, "longitude": 1}}]},
        "not a service",
    ]).encode())
    assert [(p["where"], p["field"]) for p in sheet.problems] == [
        ("services[0]", "name"), ("services[1]", "kinds"), ("services[2]", "latitude"), ("services[3]", "")]
    assert sheet.entries == []


def test_a_csv_row_is_placed_by_its_postcode_and_the_template_reads_back():
    sheet = read_csv(template_csv().encode())
    assert sheet.problems == [] and len(sheet.entries) == 1
    entry = sheet.entries[0]
    assert (entry["area"], entry["kinds"], entry["external_id"]) == ("FY1", ["home_visit", "phone_check_in"],
                                                                   "befriending-fy1")
    assert entry["latitude"] is not None
    assert read_file(template_csv().encode(), "sheet.csv").entries == sheet.entries


def entry(name, kinds, latitude=None, longitude=None, retired=False):
    return DirectoryEntry(community="fylde-coast", name=name, kinds=kinds, latitude=latitude, longitude=longitude,
                          retired=retired)


def test_nearest_first_then_those_with_no_place_and_never_the_retired():
    entries = [entry("Far", ["shopping"], 54.05, -2.80), entry("Helpline", ["shopping"]),
               entry("Near", ["shopping"], 53.82, -3.04), entry("Gone", ["shopping"], 53.82, -3.04, retired=True),
               entry("Other kind", ["meals"], 53.82, -3.04)]
    found = nearest(entries, "shopping", 53.8175, -3.0357)
    assert [e.name for e, _ in found] == ["Near", "Far", "Helpline"]
    assert found[0][1] < 1 and found[2][1] is None
    assert [e.name for e, _ in nearest(entries, "shopping", 53.8175, -3.0357, within_km=10)] == ["Near", "Helpline"]


def request(status="unmatched"):
    r = SupportRequest(community="fylde-coast", created_by="kim", person_name="Pat", latitude=53.8,
                       longitude=-3.0, support_type="shopping")
    r.status = status
    return r


def test_a_request_signposted_closes_with_it_as_its_outcome_once():
    r = request()
    r.signpost(entry("Fylde Shopping", ["shopping"]).id, "Fylde Shopping", "kim")
    assert (r.status, r.outcome, r.timeline[-1].what) == ("signposted", "Signposted to Fylde Shopping", "signposted")
    assert r.referral_stage() == ("Could not be met by a volunteer", "Signposted to Fylde Shopping")
    with pytest.raises(NotOpen):
        r.signpost(r.signposted_to, "Again", "kim")
    with pytest.raises(NotSignpostable):
        request("matched").signpost(r.signposted_to, "Fylde Shopping", "kim")
