"""FHIR referrals shaped as UK GP systems, social prescribing tools and Ontario systems send them, on both backends:
each is taken (kind of help from its SNOMED CT code, or "other" for a coordinator; what cannot be used flagged), its
Task followed from accepted to completed as the real services move the request on, and read only by the referrer's
own organisation."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from shared.contracts import load_event
from tests.integration.test_intake import staged_events
from tests.integration.test_scoping import system  # noqa: F401 (the four services, events relayed between them)

FHIR_JSON = "application/fhir+json"
SNOMED = "http://snomed.info/sct"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
OHIP = "https://fhir.infoway-inforoute.ca/NamingSystem/ca-on-patient-hcn"
PCN, PRACTICE, OTTAWA_CHC = "Fylde Coast PCN", "Blackpool Central Surgery", "Ottawa West Community Health Centre"
TOMORROW = (datetime.now(UTC) + timedelta(days=1)).replace(hour=14, minute=0, second=0, microsecond=0)
CHECKED = [{"check": check, "done_on": (date.today() - timedelta(days=30)).isoformat(),
            "expires_on": (date.today() + timedelta(days=700)).isoformat()}
           for check in ("safeguarding", "criminal_record")]


def snomed(code: str, display: str) -> dict:
    return {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display}


def uk_patient(id_: str = "pat", phone: str = "07911 123456") -> dict:
    """A patient as a GP system (EMIS Web, SystmOne) puts one in a referral: UK Core, NHS number, GP practice."""
    return {"resourceType": "Patient", "id": id_,
            "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]},
            "identifier": [{"system": NHS_NUMBER, "value": "9449306613"}],
            "name": [{"use": "official", "family": "Whitworth", "given": ["Edith", "May"], "prefix": ["Mrs"]}],
            "telecom": [{"system": "phone", "value": phone, "use": "mobile"},
                        {"system": "email", "value": "edith@example.org"}],
            "gender": "female", "birthDate": "1941-07-19",
            "address": [{"use": "home", "line": ["22 Hornby Road"], "city": "Blackpool", "postalCode": "FY1 4QE"}],
            "generalPractitioner": [{"identifier": {"system": ODS, "value": "P81001"}, "display": PRACTICE}]}


def gp_service_request(code: dict, phone: str = "07911 123456") -> dict:
    """A GP system's referral: SNOMED CT code, contained Patient and PractitionerRole, a note, no consent element
    (it is recorded on the GP's side), and usually no time."""
    return {
        "resourceType": "ServiceRequest",
        "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest"]},
        "contained": [uk_patient(phone=phone),
                      {"resourceType": "PractitionerRole", "id": "gp",
                       "practitioner": {"display": "Dr Imran Qureshi"},
                       "organization": {"identifier": {"system": ODS, "value": "P81001"}, "display": PRACTICE},
                       "telecom": [{"system": "phone", "value": "01253 555 010", "use": "work"}]}],
        "identifier": [{"system": "https://emis.example/referral-id", "value": f"EMIS-{uuid.uuid4().hex[:10]}"}],
        "status": "active", "intent": "order", "priority": "routine",
        "category": [snomed("3457005", "Patient referral")],
        "code": code,
        "subject": {"reference": "#pat"},
        "authoredOn": datetime.now(UTC).isoformat(),
        "requester": {"reference": "#gp"},
        "reasonCode": [snomed("105529008", "Lives alone")],
        "note": [{"text": "Widowed in the spring; rarely leaves the house. Would welcome a regular visitor."}],
    }


def transaction(*resources: dict) -> dict:
    """A transaction Bundle: each resource POSTed, referring to the others by urn:uuid fullUrls."""
    return {"resourceType": "Bundle", "type": "transaction", "timestamp": datetime.now(UTC).isoformat(),
            "entry": [{"fullUrl": url, "resource": resource, "request": {"method": "POST", "url": resource[
                "resourceType"]}} for url, resource in resources]}


def bundle_with_consent() -> dict:
    """An NHS e-RS style transaction: Patient, ServiceRequest (subject by urn:uuid) and a Consent."""
    patient_url, org_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    patient = {k: v for k, v in uk_patient().items() if k != "id"}
    sr = {k: v for k, v in gp_service_request(snomed("306249006", "Referral to bereavement counselor")).items()
          if k != "contained"}
    sr.update(subject={"reference": patient_url}, requester={"reference": org_url},
              occurrencePeriod={"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(hours=2)).isoformat()})
    consent = {"resourceType": "Consent", "status": "active",
               "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                     "code": "patient-privacy"}]},
               "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
               "patient": {"reference": patient_url}, "dateTime": datetime.now(UTC).isoformat(),
               "provision": {"type": "permit"}}
    organisation = {"resourceType": "Organization", "identifier": [{"system": ODS, "value": "U81001"}], "name": PCN}
    return transaction((patient_url, patient), (f"urn:uuid:{uuid.uuid4()}", sr), (org_url, organisation),
                       (f"urn:uuid:{uuid.uuid4()}", consent))


def ontario_service_request() -> dict:
    """An Ontario system's referral: OHIP number, a French name and language, a K1N postal code, no occurrence."""
    return {
        "resourceType": "ServiceRequest",
        "contained": [{"resourceType": "Patient", "id": "p",
                       "identifier": [{"system": OHIP, "value": "1234567890", "type": {"text": "OHIP"}}],
                       "name": [{"family": "Lévesque-Côté", "given": ["Geneviève"]}],
                       "telecom": [{"system": "phone", "value": "(613) 555-0199", "use": "home"}],
                       "address": [{"line": ["75 rue Dalhousie"], "city": "Ottawa", "state": "ON",
                                    "postalCode": "K1N 7C5", "country": "CA"}],
                       "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr-CA"}]},
                                          "preferred": True}]},
                      {"resourceType": "Organization", "id": "chc", "name": OTTAWA_CHC}],
        "status": "active", "intent": "order",
        "code": snomed("702982008", "Referral to voluntary support service for carers"),
        "subject": {"reference": "#p"},
        "requester": {"reference": "#chc"},
        "note": [{"text": "Aidante naturelle de son mari; a besoin de répit l'après-midi."}],
    }


@pytest.fixture
def intake(app_for):
    app = app_for("intake")
    return app.test_client(), app.extensions["ccs"].sessions


def post(client, path: str, resource: dict, headers: dict):
    return client.post(path, data=json.dumps(resource), content_type=FHIR_JSON, headers=headers)


def seen_by_coordinator(client, token, request_id: str, community: str = "fylde-coast") -> dict:
    answer = client.get(f"/requests/{request_id}", headers=token("coordinator", [community]))
    assert answer.status_code == 200
    return answer.json


def test_six_referrals_as_uk_and_ontario_systems_send_them_are_each_taken(intake, token):
    client, sessions = intake
    fylde = token("referrer", subject="ehr@fylde-pcn.example", organisation=PCN)
    ottawa = token("referrer", ["ottawa-west"], subject="ehr@owchc.example", organisation=OTTAWA_CHC)
    cases = [
        ("UK GP system, SNOMED code, NHS number", "/fhir/ServiceRequest", gp_service_request(
            snomed("871731000000106", "Referral to social prescribing service")), fylde, "fylde-coast",
         "home_visit", {"consent"}),
        ("transaction Bundle with Consent", "/fhir", bundle_with_consent(), fylde, "fylde-coast",
         "bereavement_visit", set()),
        ("Ontario, OHIP, French, K1N, no occurrence", "/fhir/ServiceRequest", ontario_service_request(), ottawa,
         "ottawa-west", "carer_respite", {"consent"}),
        ("code with text only", "/fhir/ServiceRequest", gp_service_request({"text": "Help sorting the garden"}),
         fylde, "fylde-coast", "other", {"consent", "support_type"}),
        ("unknown SNOMED code", "/fhir/ServiceRequest", gp_service_request(
            snomed("306206005", "Referral to service")), fylde, "fylde-coast", "other", {"consent", "support_type"}),
        ("unusable phone number", "/fhir/ServiceRequest", gp_service_request(
            snomed("713109004", "Referral to community meals service"), phone="+44 20 7946 09"), fylde,
         "fylde-coast", "meals", {"consent", "person.phone"}),
    ]
    published = 0
    for name, path, resource, headers, community, kind, flags in cases:
        answer = post(client, path, resource, headers)
        if path == "/fhir":  # a transaction answers 200 with its response Bundle; the ServiceRequest is 201 in it
            assert answer.status_code == 200, (name, answer.json)
            Bundle.model_validate(answer.json)
            assert answer.json["type"] == "transaction-response"
            statuses = [e["response"]["status"] for e in answer.json["entry"]]
            assert statuses == ["200 OK", "201 Created", "200 OK", "200 OK"], name
            stored = answer.json["entry"][1]["resource"]
        else:
            assert answer.status_code == 201, (name, answer.json)
            stored = answer.json
        assert answer.mimetype == FHIR_JSON
        ServiceRequest.model_validate(stored)
        seen = seen_by_coordinator(client, token, stored["id"], community)
        assert (seen["support_type"], seen["source"]) == (kind, "health_system"), name
        assert {c["field"] for c in seen["to_check"]} == flags, (name, seen["to_check"])
        task = client.get(f"/fhir/Task/{stored['id']}", headers=headers)
        assert task.status_code == 200, name
        Task.model_validate(task.json)
        assert task.json["focus"]["reference"] == f"ServiceRequest/{stored['id']}"
        held = kind == "other"
        assert task.json["status"] == ("received" if held else "accepted"), name
        assert task.json["businessStatus"]["text"] == "Received"
        published += 0 if held else 1
        assert len(staged_events(sessions)) == published, name  # kind "other" is never offered automatically

        if name.startswith("UK GP"):
            assert seen["person"]["name"] == "Mrs Edith May Whitworth" and seen["person"]["phone"] == "+447911123456"
            assert seen["referrer"] == {"organisation": PCN, "name": "Dr Imran Qureshi", "contact": "01253 555 010"}
            assert seen["reason"].startswith("Lives alone") and "regular visitor" in seen["reason"]
            assert seen["consent"] == {"share_contact": False, "sms_contact": False}  # until the coordinator confirms
        if name.startswith("transaction"):
            assert seen["consent"] == {"share_contact": True, "sms_contact": True}
            assert seen["person"]["area"] == "FY1" and seen["referrer"]["organisation"] == PCN
            read = client.get(f"/fhir/ServiceRequest/{stored['id']}", headers=headers).json
            assert read["subject"]["reference"].startswith("#") and read["id"] == stored["id"]
        if name.startswith("Ontario"):
            assert seen["person"]["name"] == "Geneviève Lévesque-Côté" and seen["person"]["area"] == "K1N"
            assert (seen["person"]["preferred_language"], seen["person"]["phone"]) == ("fr", "+16135550199")
            start, end = (datetime.fromisoformat(seen["when"][k]) for k in ("start", "end"))
            assert end - start == timedelta(days=14)  # as soon as convenient
            assert "répit" in seen["reason"] and seen["referrer"]["organisation"] == OTTAWA_CHC
        if kind == "other":
            assert seen["reason"].startswith("Asked for: ")
            assert [e["what"] for e in seen["timeline"]][:1] == ["submitted"] and any(
                e["what"] == "waiting" for e in seen["timeline"])
        if name.startswith("unusable"):
            [phone] = [c for c in seen["to_check"] if c["field"] == "person.phone"]
            assert phone["value"] == "+44 20 7946 09" and seen["person"]["phone"] is None


def test_a_coordinator_triages_an_other_referral_and_only_then_is_it_offered(intake, token):
    client, sessions = intake
    fylde = token("referrer", subject="ehr@fylde-pcn.example", organisation=PCN)
    made = post(client, "/fhir/ServiceRequest", gp_service_request({"text": "Someone to pop in for a chat"}), fylde)
    assert made.status_code == 201 and staged_events(sessions) == []
    coordinator = token("coordinator")
    chose = client.patch(f"/requests/{made.json['id']}", json={"support_type": "home_visit"}, headers=coordinator)
    assert chose.status_code == 200, chose.json
    assert [c["field"] for c in chose.json["to_check"]] == ["consent"]
    [event] = staged_events(sessions)
    submitted = load_event(event)
    assert submitted.type == "request.submitted" and submitted.payload["support_type"] == "home_visit"
    assert client.get(f"/fhir/Task/{made.json['id']}", headers=fylde).json["status"] == "accepted"
    back = client.patch(f"/requests/{made.json['id']}", json={"support_type": "other"}, headers=coordinator)
    assert back.status_code == 409  # volunteers may have been asked: it cannot go back to "other"


def test_invalid_r4_is_refused_with_an_operation_outcome_naming_each_problem(intake, token):
    client, sessions = intake
    fylde = token("referrer", subject="ehr@fylde-pcn.example", organisation=PCN)
    resource = gp_service_request(snomed("871731000000106", "Referral to social prescribing service"))
    resource["contained"][0]["birthDate"] = "19/07/1941"
    resource["colour"] = "blue"
    resource["contained"].append({"resourceType": "Referral", "id": "x"})
    for broken, expected in (
            (resource, {"ServiceRequest.contained[2]"}),  # not a resource type at all: named first
            ({**resource, "contained": resource["contained"][:2]},
             {"ServiceRequest.contained[0].birthDate", "ServiceRequest.colour"}),
            ({**gp_service_request(snomed("871731000000106", "x")), "priority": "whenever", "status": "draft",
              "doNotPerform": True}, {"ServiceRequest.priority", "ServiceRequest.status",
                                      "ServiceRequest.doNotPerform"})):
        refused = post(client, "/fhir/ServiceRequest", broken, fylde)
        assert refused.status_code == 422 and refused.mimetype == FHIR_JSON
        OperationOutcome.model_validate(refused.json)
        assert {e for i in refused.json["issue"] for e in i["expression"]} == expected
        assert all(i["diagnostics"] for i in refused.json["issue"])
    sent = bundle_with_consent()
    sent["entry"][0]["resource"]["birthDate"] = "19/07/1941"
    refused = post(client, "/fhir", sent, fylde)
    assert refused.status_code == 422
    assert {e for i in refused.json["issue"] for e in i["expression"]} == {"Bundle.entry[0].resource.birthDate"}
    assert staged_events(sessions) == []


def test_the_capability_statement_is_open_and_says_what_is_supported(intake):
    client, _ = intake
    answer = client.get("/fhir/metadata")
    assert answer.status_code == 200 and answer.mimetype == FHIR_JSON
    CapabilityStatement.model_validate(answer.json)
    [rest] = answer.json["rest"]
    assert {r["type"]: [i["code"] for i in r["interaction"]] for r in rest["resource"]} == {
        "ServiceRequest": ["create", "read"], "Task": ["read", "search-type"]}


def test_a_task_follows_its_referral_to_completed_and_only_its_organisation_reads_it(system, token):  # noqa: F811
    intake, matching = system.client("intake"), system.client("matching")
    coordinator = token("coordinator")
    phone = "+447911729611"
    volunteer = matching.post("/volunteers", headers=coordinator, json={
        "name": "Hettie Volunteer", "phone": phone, "postcode": "FY1", "skills": ["companionship"],
        "checks": CHECKED, "max_distance_km": 15})
    assert volunteer.status_code == 201, volunteer.json
    fylde = token("referrer", subject="ehr@fylde-pcn.example", organisation=PCN)
    resource = gp_service_request(snomed("871731000000106", "Referral to social prescribing service"))
    resource["occurrencePeriod"] = {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(hours=2)).isoformat()}
    made = post(intake, "/fhir/ServiceRequest", resource, fylde)
    assert made.status_code == 201, made.json
    request_id = made.json["id"]

    def task() -> dict:
        answer = intake.get(f"/fhir/Task/{request_id}", headers=fylde)
        assert answer.status_code == 200
        Task.model_validate(answer.json)
        return answer.json

    def stage() -> tuple[str, str]:
        current = task()
        return current["status"], current["businessStatus"]["text"]

    assert stage() == ("accepted", "Received")
    system.relay()  # matching takes the request and offers it
    assert stage() == ("in-progress", "Looking for a volunteer")
    [offer] = [o for o in system.events("matching", "offer.made") if o["request_id"] == request_id]
    system.send_sms()
    system.relay()
    system.text(phone, f"YES {offer['code']}")
    system.relay()
    assert stage() == ("in-progress", "Volunteer found")
    system.send_sms()
    system.relay()
    system.text(phone, f"DONE {offer['code']}")
    system.relay()
    done = task()
    assert (done["status"], done["businessStatus"]["text"]) == ("completed", "Help given")
    assert done["executionPeriod"]["end"] and "Hettie" not in json.dumps(done) and phone not in json.dumps(done)

    found = intake.get("/fhir/Task", query_string={"focus": f"ServiceRequest/{request_id}"}, headers=fylde)
    assert found.status_code == 200
    Bundle.model_validate(found.json)
    assert found.json["type"] == "searchset" and [e["resource"]["id"] for e in found.json["entry"]] == [request_id]

    colleague = token("referrer", subject="another@fylde-pcn.example", organisation=PCN)
    assert intake.get(f"/fhir/Task/{request_id}", headers=colleague).status_code == 200
    other = token("referrer", subject="ehr@other-practice.example", organisation="Lytham Surgery")
    refused = intake.get(f"/fhir/Task/{request_id}", headers=other)
    assert refused.status_code == 404 and refused.json["resourceType"] == "OperationOutcome"
    assert "Whitworth" not in refused.get_data(as_text=True)
    nothing = intake.get("/fhir/Task", query_string={"focus": f"ServiceRequest/{request_id}"}, headers=other)
    assert nothing.status_code == 200 and nothing.json["total"] == 0
    elsewhere = token("referrer", ["ottawa-west"], subject="ehr@fylde-pcn.example", organisation=PCN)
    assert intake.get(f"/fhir/Task/{request_id}", headers=elsewhere).status_code == 404


def test_the_coordinators_page_says_what_to_check_and_that_no_volunteer_is_asked_yet(app_for, token):
    from tests.integration.test_role_homes import signed_in

    app = app_for("intake")
    fylde = token("referrer", subject="ehr@fylde-pcn.example", organisation=PCN)
    resource = gp_service_request({"text": "Help sorting the garden"}, phone="+44 20 7946 09")
    made = post(app.test_client(), "/fhir/ServiceRequest", resource, fylde)
    assert made.status_code == 201
    coordinator, _ = signed_in(app, "kim@fylde.example", "coordinator")
    page = coordinator.get(f"/board/{made.json['id']}").text
    box = page.split('id="to-check"', 1)[1].split("</section>", 1)[0]
    assert "Asked for: Help sorting the garden" in box and "+44 20 7946 09" in box and "No consent" in box
    assert "No volunteer is asked" in box
