"""Pure rules: reading SMS replies, wording offers, routing paths, flattening errors, postcodes."""

from datetime import datetime, timezone

import pytest

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
