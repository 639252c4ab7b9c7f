"""FHIR ServiceRequests through intake's API on both backends: created, read back, refused, replayed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.servicerequest import ServiceRequest

from shared.contracts import load_event
from tests.helpers import EXAMPLE_DAY, NEXT_MONDAY
from tests.integration.test_intake import REFERRAL, rows, staged_events

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fhir"
FHIR_JSON = "application/fhir+json"
EHR = "ehr@fylde-pcn.nhs.uk"


def fixture(name: str) -> dict:
    """A fresh copy of an example resource, asking for help next week (see EXAMPLE_DAY)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8").replace(EXAMPLE_DAY, NEXT_MONDAY))


@pytest.fixture
def intake(app_for):
    """Intake's test client and sessions."""
    app = app_for("intake")
    return app.test_client(), app.extensions["ccs"].sessions


def post(client, resource, headers, **kwargs):
    """POST a ServiceRequest as application/fhir+json."""
    return client.post("/fhir/ServiceRequest", data=json.dumps(resource), content_type=FHIR_JSON,
                       headers=headers, **kwargs)


def expressions(response) -> set[str]:
    """Every expression an OperationOutcome answer names, after checking it is one."""
    assert response.mimetype == FHIR_JSON
    OperationOutcome.model_validate(response.json)
    return {e for i in response.json["issue"] for e in i.get("expression", [])}


def status_extension(resource: dict) -> str:
    """Our status, as the stored resource carries it."""
    from services.intake.fhir import REQUEST_STATUS

    [code] = [e["valueCode"] for e in resource["extension"] if e["url"] == REQUEST_STATUS]
    return code


def test_a_service_request_is_created_read_back_and_listed_with_the_referrals(intake, token):
    client, sessions = intake
    ehr = token("referrer", subject=EHR, organisation="Fylde Coast PCN")
    created = post(client, fixture("servicerequest-fylde-coast.json"), ehr)
    assert created.status_code == 201, created.json
    assert created.mimetype == FHIR_JSON
    body = created.json
    request_id = body["id"]
    uuid.UUID(request_id)
    assert created.headers["Location"].endswith(f"/fhir/ServiceRequest/{request_id}")
    assert (body["status"], status_extension(body)) == ("active", "submitted")
    ServiceRequest.model_validate(body)

    read = client.get(f"/fhir/ServiceRequest/{request_id}", headers=ehr)
    assert read.status_code == 200 and read.mimetype == FHIR_JSON
    assert read.json == body

    listed = client.get("/referrals", headers=ehr).json
    assert [(r["id"], r["status"], r["referrer_organisation"], r["support_type"]) for r in listed] == [
        (request_id, "submitted", "Fylde Coast PCN", "bereavement_visit")]

    seen = client.get(f"/requests/{request_id}", headers=token("coordinator")).json
    assert (seen["source"], seen["urgency"], seen["community"]) == ("health_system", "soon", "fylde-coast")
    assert seen["person"]["phone"] == "+447911123456" and seen["person"]["area"] == "FY1"
    assert seen["referrer"] == {"organisation": "Fylde Coast PCN", "name": "Dr Asha Rao",
                                "contact": "asha.rao@fylde-pcn.example"}
    assert seen["reason"] == "Recently bereaved, lives alone, would welcome a visit."
    assert seen["consent"] == {"share_contact": True, "sms_contact": True}
    [event] = staged_events(sessions)
    payload = load_event(event).payload
    assert payload["source"] == "health_system" and payload["support_type"] == "bereavement_visit"
    assert "Pat" not in str(event) and "7911123456" not in str(event)

    cancelled = client.post(f"/requests/{request_id}/cancel", json={"reason": "Family arranged help"},
                            headers=token("coordinator"))
    assert cancelled.status_code == 200
    after = client.get(f"/fhir/ServiceRequest/{request_id}", headers=ehr).json
    assert (after["status"], status_extension(after)) == ("revoked", "cancelled")


def test_an_ottawa_service_request_becomes_a_weekly_request_in_ottawa_west(intake, token):
    client, _ = intake
    created = post(client, fixture("servicerequest-ottawa-west.json"),
                   token("referrer", ["ottawa-west"], subject="ehr@owchc.example"))
    assert created.status_code == 201, created.json
    seen = client.get(f"/requests/{created.json['id']}", headers=token("coordinator", ["ottawa-west"])).json
    assert seen["community"] == "ottawa-west" and seen["source"] == "health_system"
    assert seen["person"]["phone"] == "+16132345678" and seen["person"]["area"] == "K2P"
    assert seen["person"]["preferred_language"] == "fr"
    assert seen["when"] == {"days": ["mon", "tue", "wed", "thu", "fri"], "part_of_day": "afternoon"}
    assert seen["repeat"] == {"every_weeks": 1, "occurrences": 6}
    assert seen["consent"] == {"share_contact": True, "sms_contact": False}
    assert seen["referrer"]["organisation"] == "Ottawa West Community Health Centre"


@pytest.mark.parametrize("resource, expected", [
    (fixture("servicerequest-no-subject.json"), {"ServiceRequest.subject"}),
    (fixture("servicerequest-completed-unknown-code.json"), {"ServiceRequest.status"}),
    ({"resourceType": "Patient", "id": "p"}, {"ServiceRequest"}),
    ({**fixture("servicerequest-fylde-coast.json"), "colour": "blue"}, {"ServiceRequest.colour"}),
], ids=["no subject", "completed", "a Patient", "unknown element"])
def test_a_resource_we_cannot_take_is_refused_with_an_operation_outcome_naming_each_problem(
        intake, token, resource, expected):
    from services.intake.domain import SupportRequest

    client, sessions = intake
    response = post(client, resource, token("referrer", subject=EHR))
    assert response.status_code == 422
    assert expressions(response) == expected
    assert all(i["severity"] == "error" and i["diagnostics"] for i in response.json["issue"])
    assert rows(sessions, SupportRequest) == 0 and staged_events(sessions) == []


def test_a_missing_postcode_consent_or_usable_phone_is_flagged_for_the_coordinator_not_refused(intake, token):
    from services.intake.domain import SupportRequest

    client, sessions = intake
    resource = fixture("servicerequest-fylde-coast.json")
    del resource["extension"]
    del resource["contained"][0]["address"][0]["postalCode"]
    resource["contained"][0]["telecom"] = [{"system": "phone", "value": "+44 20 7946 09"}]
    created = post(client, resource, token("referrer", subject=EHR))
    assert created.status_code == 201, created.json
    seen = client.get(f"/requests/{created.json['id']}", headers=token("coordinator")).json
    assert {c["field"] for c in seen["to_check"]} == {"consent", "person.postcode", "person.phone"}
    assert seen["person"]["phone"] is None and seen["consent"] == {"share_contact": False, "sms_contact": False}
    assert rows(sessions, SupportRequest) == 1
    assert staged_events(sessions) == []  # not placed: matching is not asked until a coordinator places them


@pytest.mark.parametrize("body", ["this is not JSON", "[1, 2]", ""])
def test_a_body_that_is_not_a_json_object_is_a_bad_request(intake, token, body):
    client, _ = intake
    response = client.post("/fhir/ServiceRequest", data=body, content_type=FHIR_JSON,
                           headers=token("referrer", subject=EHR))
    assert response.status_code == 400
    assert expressions(response) == {"ServiceRequest"}


def test_a_token_is_needed_and_managers_may_not_refer_or_read(intake, token):
    client, _ = intake
    resource = fixture("servicerequest-fylde-coast.json")
    assert post(client, resource, {}).status_code == 401
    assert post(client, resource, {"Authorization": "Bearer forged"}).status_code == 401
    manager = token("manager")
    assert post(client, resource, manager).status_code == 403
    created = post(client, resource, token("referrer", subject=EHR)).json
    assert client.get(f"/fhir/ServiceRequest/{created['id']}").status_code == 401
    refused = client.get(f"/fhir/ServiceRequest/{created['id']}", headers=manager)
    assert refused.status_code == 403 and "Pat" not in refused.get_data(as_text=True)


def test_only_the_sender_reads_a_service_request_and_other_referrals_are_not_service_requests(intake, token):
    client, _ = intake
    created = post(client, fixture("servicerequest-fylde-coast.json"), token("referrer", subject=EHR)).json
    for path, headers in (
            (f"/fhir/ServiceRequest/{created['id']}", token("referrer", subject="someone@else.example")),
            (f"/fhir/ServiceRequest/{uuid.uuid4()}", token("referrer", subject=EHR))):
        response = client.get(path, headers=headers)
        assert response.status_code == 404
        assert expressions(response) == {"ServiceRequest"}
        assert response.json["issue"][0]["code"] == "not-found"
        assert "Pat" not in response.get_data(as_text=True)
    referral = client.post("/referrals", json=REFERRAL, headers=token("referrer", subject=EHR)).json
    assert client.get(f"/fhir/ServiceRequest/{referral['id']}",
                      headers=token("referrer", subject=EHR)).status_code == 404


def test_the_same_idempotency_key_and_body_answer_the_first_result_and_another_body_is_refused(intake, token):
    from services.intake.domain import SupportRequest

    client, sessions = intake
    headers = {**token("referrer", subject=EHR), "Idempotency-Key": "ehr-msg-0001"}
    resource = fixture("servicerequest-fylde-coast.json")
    first = post(client, resource, headers)
    again = post(client, resource, headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.json["id"] == first.json["id"]
    assert again.mimetype == FHIR_JSON and again.headers["Idempotent-Replayed"] == "true"
    assert rows(sessions, SupportRequest) == 1 and len(staged_events(sessions)) == 1
    different = post(client, {**resource, "note": [{"text": "Another note"}]}, headers)
    assert different.status_code == 422 and "different request body" in different.json["detail"]
    assert rows(sessions, SupportRequest) == 1
    with sessions() as session:
        assert session.scalar(sa.select(SupportRequest.source_document)) == resource
