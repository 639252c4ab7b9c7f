"""Pure rules: routing paths, flattening errors, postcodes."""


import pytest

from shared.frontdoor import route
from shared.gazetteer import UnknownPostcode, district_of, locate
from shared.web import field_errors


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
