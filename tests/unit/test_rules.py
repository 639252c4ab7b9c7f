"""Pure rules: reading SMS replies, choosing a volunteer, routing paths, flattening errors."""

import uuid
from datetime import datetime, timezone

import pytest

from services.matching.handlers import distance_km, nearest_candidate
from services.matching.model import MatchRequest, Volunteer
from services.notify.sms import offer_text, parse_reply, window_text
from shared.frontdoor import route
from shared.gazetteer import UnknownPostcode, district_of, locate
from shared.web import field_errors


@pytest.mark.parametrize("body, keyword, code", [
    ("YES 4821", "YES", "4821"),
    ("yes 4821", "YES", "4821"),
    ("Y 4821", "YES", "4821"),
    ("4821 yes", "YES", "4821"),
    ("Yes! 4821", "YES", "4821"),
    ("yes", "YES", None),
    ("NO 4821", "NO", "4821"),
    ("no, sorry 4821", "NO", "4821"),
    ("HELP", "HELP", None),
    ("what is this", None, None),
    ("YES 48211", "YES", None),
])
def test_parse_reply(body, keyword, code):
    reply = parse_reply(body)
    assert (reply.keyword, reply.code) == (keyword, code)


def _volunteer(name, lat, lon, skills=("practical",), max_km=10, active=True):
    return Volunteer(id=uuid.uuid4(), name=name, phone="+447911123000", skills=list(skills), latitude=lat,
                     longitude=lon, max_distance_km=max_km, active=active, community="fylde-coast")


def _request(kind="shopping"):
    when = datetime(2026, 11, 25, 14, tzinfo=timezone.utc)
    return MatchRequest(request_id=uuid.uuid4(), community="fylde-coast", support_type=kind, latitude=53.8142,
                        longitude=-3.0503, area="FY1", window_start=when, window_end=when, correlation_id="c")


def test_distance_between_blackpool_and_kendal_is_about_60_km():
    # equirectangular by hand: 0.5138 deg north = 57.13 km, 0.3043 deg east at 54.07N = 19.88 km
    assert distance_km(53.8142, -3.0503, 54.3280, -2.7460) == pytest.approx(60.49, abs=0.3)


def test_nearest_active_volunteer_with_the_skill_within_their_range_is_chosen():
    near = _volunteer("near", 53.82, -3.05)
    nearer_but_inactive = _volunteer("inactive", 53.8142, -3.0503, active=False)
    nearer_without_skill = _volunteer("driver", 53.8143, -3.0503, skills=("driving",))
    far = _volunteer("far", 53.9, -3.0)
    out_of_their_range = _volunteer("short range", 53.85, -3.05, max_km=1)
    chosen = nearest_candidate([far, near, nearer_but_inactive, nearer_without_skill, out_of_their_range],
                               _request(), exclude=set())
    assert chosen is near


def test_volunteers_already_asked_are_skipped_and_nobody_left_gives_none():
    near, far = _volunteer("near", 53.82, -3.05), _volunteer("far", 53.87, -3.0)
    assert nearest_candidate([near, far], _request(), exclude={near.id}) is far
    assert nearest_candidate([near, far], _request(), exclude={near.id, far.id}) is None
    assert nearest_candidate([near], _request("bereavement_visit"), exclude=set()) is None


def test_offer_text_names_only_kind_district_window_and_code():
    start = datetime(2026, 11, 25, 14, tzinfo=timezone.utc)
    text = offer_text("shopping", "FY1", window_text(start, start.replace(hour=16)), "4821")
    assert text == ("Can you help? Shopping near FY1, Wed 25 Nov 14:00-16:00. "
                    "Reply YES 4821 to accept or NO 4821 to decline.")
    assert len(text) <= 160


@pytest.mark.parametrize("path, service", [
    ("/requests", "intake"), ("/requests/abc", "intake"), ("/volunteers", "matching"), ("/sms/inbound", "notify"),
    ("/activity", "metrics"), ("/healthz/notify", "notify"), ("/openapi/metrics.json", "metrics"),
    ("/requestsx", None), ("/admin", None),
])
def test_front_door_routes_each_path_to_its_owner(path, service):
    assert route(path) == service


def test_field_errors_name_every_bad_field_with_a_pointer():
    errors = field_errors({"phone": ["bad"], "window": {"end": ["too early", "not a date"]}})
    assert errors == [
        {"field": "phone", "pointer": "#/phone", "detail": "bad"},
        {"field": "window.end", "pointer": "#/window/end", "detail": "too early"},
        {"field": "window.end", "pointer": "#/window/end", "detail": "not a date"},
    ]


@pytest.mark.parametrize("postcode, district", [("FY1 4AB", "FY1"), ("fy14ab", "FY1"), ("LA9", "LA9"),
                                                ("K2P 1L4", "K2P"), ("k2p", "K2P"), ("CW12 1AA", "CW12")])
def test_postcodes_resolve_through_their_district(postcode, district):
    assert district_of(postcode)[1] == district
    assert locate(postcode).district == district


@pytest.mark.parametrize("postcode", ["", "12345", "FY", "ZZ99 9ZZ", "D1A 1A1"])
def test_unknown_or_malformed_postcodes_are_refused(postcode):
    with pytest.raises(UnknownPostcode):
        locate(postcode)


@pytest.mark.parametrize("days, part, text", [
    (["mon", "tue", "wed", "thu", "fri"], "afternoon", "any weekday afternoon"),
    (["mon", "thu"], "morning", "Mon or Thu morning"),
    (["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "evening", "any day evening"),
])
def test_flexible_windows_read_as_people_say_them(days, part, text):
    assert window_text(None, None, days, part) == text


def test_the_front_door_merges_every_services_openapi_document_and_refuses_clashes():
    from shared.frontdoor import merge_openapi

    problem = {"type": "object"}
    intake = {"openapi": "3.0.3", "tags": [{"name": "requests"}], "paths": {"/requests": {"get": {}}},
              "components": {"schemas": {"Problem": problem, "RequestIn": {"type": "object"}}}}
    matching = {"openapi": "3.0.3", "tags": [{"name": "volunteers"}], "paths": {"/volunteers": {"post": {}}},
                "components": {"schemas": {"Problem": problem}}}
    merged = merge_openapi({"intake": intake, "matching": matching})
    assert set(merged["paths"]) == {"/requests", "/volunteers"}
    assert set(merged["components"]["schemas"]) == {"Problem", "RequestIn"}
    assert [t["name"] for t in merged["tags"]] == ["requests", "volunteers"]
    with pytest.raises(ValueError, match="components.schemas.Problem"):
        merge_openapi({"intake": intake, "matching": {**matching, "components": {"schemas": {"Problem": {}}}}})
    with pytest.raises(ValueError, match="/requests is served by two services"):
        merge_openapi({"intake": intake, "matching": {**matching, "paths": {"/requests": {}}}})
