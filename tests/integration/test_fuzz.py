"""Schemathesis over every service's OpenAPI document, on both backends: whatever comes in, no answer is a 5xx, and
every answer is as the document says (status, media type, headers, body); what the document says is invalid is
refused.

The suite runs the examples and fuzzing phases (positive and negative data), a few examples per operation with a
fixed seed. CCS_FUZZ_THOROUGH=1 adds the coverage phase (every boundary and missing field the documents imply) and
more examples: minutes rather than seconds, worth running after changing a schema."""

from __future__ import annotations

import json
import os
from typing import Callable

import jsonschema_rs  # the validator schemathesis itself uses
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from shared.config import SERVICES
from shared.frontdoor import merge_openapi, route

THOROUGH = os.environ.get("CCS_FUZZ_THOROUGH") == "1"
# Every check on; few examples per operation and a fixed seed keep it short and the same each run.
CONFIG = {
    "seed": 12,
    # The tests send a token of a role each operation lets in (so no generated Authorization); query parameters
    # the document does not name are ignored, as it does not forbid them.
    "generation": {"max-examples": 50 if THOROUGH else 8, "deterministic": True, "database": "none",
                   "with-security-parameters": False, "allow-extra-parameters": False},
    "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": THOROUGH}},
    "checks": {
        "enabled": True,
        # Data the document calls valid may still break a rule it states in words, relative to today or between
        # fields (a window from yesterday to a year ahead, a postcode the gazetteer knows): 422, never 400 or 5xx.
        "positive_data_acceptance": {"expected-statuses": ["2XX", "401", "403", "404", "409", "422"]},
    },
    "suppress-health-check": ["all"],
}


def role_for(path: str) -> str:
    """A role each operation lets in: referrers refer, managers read the counts, coordinators do the rest."""
    if path.startswith(("/referrals", "/fhir")):
        return "referrer"
    if path.startswith("/activity"):
        return "manager"
    return "coordinator"


def pagination_header_conformance(ctx, response, case) -> None:
    """X-Pagination is JSON matching the schema the document gives it (schemathesis reads only `schema` headers)."""
    sent = response.headers.get("x-pagination")
    if sent is None:
        return
    documented = case.operation.schema.raw_schema["components"]["headers"]["PAGINATION"]
    schema = documented["content"]["application/json"]["schema"]
    components = case.operation.schema.raw_schema["components"]["schemas"]
    resolved = components[schema["$ref"].rsplit("/", 1)[1]]
    jsonschema_rs.validate(resolved, json.loads(sent[0]))


def front_door(apps: dict) -> Callable:
    """One WSGI app in front of the services' apps, routing each path to the service that owns it as the front door
    does, and serving their documents merged at /openapi.json as the front door does."""
    document = json.dumps(merge_openapi({name: app.test_client().get(f"/openapi/{name}.json").get_json()
                                         for name, app in apps.items()}))

    def dispatch(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/openapi.json":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [document.encode()]
        owner = route(path)
        if owner is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        return apps[owner](environ, start_response)

    return dispatch


@pytest.fixture
def api(app_for, monkeypatch):
    """Every service's OpenAPI document, with the apps they describe (on the test's backend) behind one door."""
    if not hasattr(pytest.Function, "_nodeid"):
        # schemathesis 4.32 names each operation's subtest by setting `_nodeid`, which pytest 9.2 no longer has.
        monkeypatch.setattr(pytest.Function, "_nodeid", property(lambda node: node.nodeid, lambda node, _: None),
                            raising=False)
    door = front_door({name: app_for(name) for name in SERVICES})
    return schemathesis.openapi.from_wsgi("/openapi.json", door, config=schemathesis.Config.from_dict(CONFIG))


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case, token):
    """Valid and invalid input alike, with a token of a role the operation lets in."""
    case.call_and_validate(headers=token(role_for(case.path)), additional_checks=[pagination_header_conformance])


# --- what the fuzzer found, kept found ----------------------------------------------------------------------------

LISTS = {"intake": ["/requests", "/referrals"], "matching": ["/volunteers"], "notify": ["/sms/messages"]}


def test_a_page_past_the_last_is_refused_as_documented_and_x_pagination_is_the_documented_json(app_for, token):
    from shared.web import MAX_PAGE, PaginationOut

    for name, paths in LISTS.items():
        client = app_for(name).test_client()
        document = client.get(f"/openapi/{name}.json").json
        header = document["components"]["headers"]["PAGINATION"]
        assert header["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PaginationOut"}
        for path in paths:
            headers = token(role_for(path))
            [page] = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "page"]
            assert page["schema"]["maximum"] == MAX_PAGE
            for number in (2 ** 64 + 1, MAX_PAGE + 1, 0):
                refused = client.get(f"{path}?page={number}", headers=headers)
                assert refused.status_code == 422, (path, number)
                assert [e["field"] for e in refused.json["errors"]] == ["page"]
            listed = client.get(f"{path}?page={MAX_PAGE}&page_size=100", headers=headers)
            assert listed.status_code == 200 and listed.json == []
            assert PaginationOut().load(json.loads(listed.headers["X-Pagination"])) == {"total": 0, "total_pages": 0}


def test_an_undeclared_method_gets_405_with_allow(app_for, token):
    for name, method, path, allowed in [
            ("intake", "DELETE", "/requests", {"GET", "POST"}), ("matching", "PUT", "/volunteers", {"GET", "POST"}),
            ("notify", "GET", "/sms/inbound", {"POST"}), ("metrics", "POST", "/activity", {"GET"})]:
        answer = app_for(name).test_client().open(path, method=method, headers=token("admin"))
        assert (answer.status_code, answer.mimetype) == (405, "application/problem+json"), path
        assert allowed <= {m.strip() for m in answer.headers["Allow"].split(",")}, path


def test_a_body_of_the_wrong_media_type_gets_415_not_422(app_for, token):
    from tests.integration.test_bus import SHOPPING, VOLUNTEER

    sent = {  # service: (path, role, body, the wrong media type)
        "intake": ("/requests", "coordinator", json.dumps(SHOPPING), "text/plain"),
        "matching": ("/volunteers", "coordinator", json.dumps(VOLUNTEER), "application/x-www-form-urlencoded"),
        "metrics": ("/activities", "coordinator", json.dumps({"kind": "death_cafe", "attendance": 3}), "text/csv"),
        "notify": ("/sms/inbound", "coordinator", json.dumps({"From": "+447911123456", "Body": "YES"}),
                   "application/json"),
    }
    for name, (path, role, body, media_type) in sent.items():
        answer = app_for(name).test_client().post(path, data=body, content_type=media_type, headers=token(role))
        assert (name, answer.status_code, answer.mimetype) == (name, 415, "application/problem+json")
        assert media_type in answer.json["detail"]
    spreadsheet = app_for("matching").test_client().post("/volunteers/import", json=[VOLUNTEER],
                                                         headers=token("coordinator"))
    assert spreadsheet.status_code == 415


def test_a_check_or_time_away_without_one_of_its_dates_is_named_not_a_500(app_for, token):
    from tests.integration.test_bus import VOLUNTEER

    client = app_for("matching").test_client()
    headers = token("coordinator")
    answer = client.post("/volunteers", headers=headers, json={
        **VOLUNTEER, "checks": [{"check": "criminal_record", "expires_on": "2027-01-01"}],
        "time_away": [{"ends_on": "2027-01-01"}, {"starts_on": "2027-01-01"}]})
    assert answer.status_code == 422
    assert {e["field"] for e in answer.json["errors"]} == {"checks.0.done_on", "time_away.0.starts_on",
                                                          "time_away.1.ends_on"}
    made = client.post("/volunteers", headers=headers, json=VOLUNTEER).json
    changed = client.patch(f"/volunteers/{made['id']}", headers=headers, json={
        "checks": [{"check": "driving"}], "time_away": [{"starts_on": "2027-01-01"}]})
    assert changed.status_code == 422
    assert {e["field"] for e in changed.json["errors"]} == {"checks.0.done_on", "time_away.0.ends_on"}
    assert client.patch(f"/volunteers/{made['id']}", headers=headers, json={"weekly_cap": "2"}).status_code == 422
    assert client.post("/volunteers/import?skip_invalid=yes", data="name\n", content_type="text/csv",
                       headers=headers).status_code == 422
