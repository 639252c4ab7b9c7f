"""FHIR ServiceRequests as referrals: the mapping, the problems it names, OperationOutcomes and stored resources."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task
from marshmallow import ValidationError

from services.intake import fhir
from services.intake.entrypoints.api import FHIR_REFERRAL_IN, ReferralIn, fhir_referral
from shared.auth import Actor
from shared.web import field_errors
from tests.helpers import EXAMPLE_DAY, NEXT_MONDAY

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fhir"
GOOD = ("servicerequest-fylde-coast.json", "servicerequest-ottawa-west.json")


def fixture(name: str) -> dict:
    """A fresh copy of an example resource, asking for help next week (see EXAMPLE_DAY)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8").replace(EXAMPLE_DAY, NEXT_MONDAY))


def problems(resource: dict) -> dict[str, str]:
    """The expression and code of each issue to_referral raises."""
    with pytest.raises(fhir.FhirProblem) as raised:
        fhir.to_referral(resource)
    return {expression: i["code"] for i in raised.value.issues for expression in i["expression"]}


def test_the_fylde_coast_example_becomes_a_referral():
    assert fhir.to_referral(fixture("servicerequest-fylde-coast.json")) == {
        "person": {"name": "Pat Example", "phone": "+447911123456", "address": "1 Promenade, Blackpool",
                   "postcode": "FY1 4AB", "date_of_birth": "1948-03-02", "preferred_language": "en"},
        "support_type": "bereavement_visit",
        "urgency": "soon",
        "when": {"start": f"{NEXT_MONDAY}T14:00:00+00:00", "end": f"{NEXT_MONDAY}T16:00:00+00:00"},
        "consent": {"share_contact": True, "sms_contact": True},
        "referrer": {"organisation_type": "health_system", "name": "Dr Asha Rao", "organisation": "Fylde Coast PCN",
                     "contact": "asha.rao@fylde-pcn.example"},
        "reason": "Recently bereaved, lives alone, would welcome a visit.",
        "external_id": "REF-2030-0001",
        "to_check": [],
    }


def test_the_ottawa_example_becomes_a_weekly_referral_in_french():
    referral = fhir.to_referral(fixture("servicerequest-ottawa-west.json"))
    assert referral["person"] == {"name": "Marie Exemple", "phone": "+1 613 234 5678",
                                  "address": "200 Elgin Street, Apt 4, Ottawa", "postcode": "K2P 1L4",
                                  "preferred_language": "fr"}
    assert referral["when"] == {"days": ["mon", "tue", "wed", "thu", "fri"], "part_of_day": "afternoon"}
    assert referral["repeat"] == {"every_weeks": 1, "occurrences": 6}
    assert (referral["support_type"], referral["urgency"]) == ("shopping", "routine")
    assert referral["consent"] == {"share_contact": True, "sms_contact": False}
    assert referral["referrer"] == {"organisation_type": "health_system", "name": "Dr Jean Tremblay",
                                    "organisation": "Ottawa West Community Health Centre",
                                    "contact": "+1 613 555 0142"}
    assert referral["reason"].startswith("Recovering from a hip operation") and "French" in referral["reason"]
    assert "external_id" not in referral


@pytest.mark.parametrize("name", GOOD)
def test_the_good_examples_are_valid_r4_and_load_as_referrals(name):
    ServiceRequest.model_validate(fixture(name))
    loaded = FHIR_REFERRAL_IN.load(fhir.to_referral(fixture(name)))
    assert loaded["referrer"]["organisation_type"] == "health_system"
    assert loaded["person"]["area"] in ("FY1", "K2P")


@pytest.mark.parametrize("name, expected", [
    ("servicerequest-no-subject.json", {"ServiceRequest.subject": "required"}),
    ("servicerequest-completed-unknown-code.json", {"ServiceRequest.status": "business-rule"}),
])
def test_the_bad_examples_name_each_problem(name, expected):
    assert problems(fixture(name)) == expected


def test_another_resource_type_is_refused():
    assert problems({"resourceType": "Patient", "id": "p"}) == {"ServiceRequest": "invalid"}
    assert problems({"resourceType": "Bundle", "type": "transaction"}) == {"ServiceRequest": "invalid"}
    assert problems({"status": "active"}) == {"ServiceRequest": "invalid"}


def changed(**changes) -> dict:
    """The Fylde Coast example with top-level elements replaced (None removes one)."""
    resource = fixture("servicerequest-fylde-coast.json")
    for name, value in changes.items():
        if value is None:
            resource.pop(name, None)
        else:
            resource[name] = value
    return resource


@pytest.mark.parametrize("resource, expression, code", [
    (changed(status="draft"), "ServiceRequest.status", "business-rule"),
    (changed(status="revoked"), "ServiceRequest.status", "business-rule"),
    (changed(intent="filler-order"), "ServiceRequest.intent", "not-supported"),
    (changed(doNotPerform=True), "ServiceRequest.doNotPerform", "business-rule"),
    (changed(priority="whenever"), "ServiceRequest.priority", "code-invalid"),
    (changed(subject={"reference": "#nobody"}), "ServiceRequest.subject", "invalid"),
    (changed(subject={"reference": "#gp"}), "ServiceRequest.subject", "invalid"),
])
def test_what_we_cannot_take_is_named(resource, expression, code):
    assert problems(resource) == {expression: code}


def test_a_deceased_patient_is_refused():
    resource = fixture("servicerequest-fylde-coast.json")
    resource["contained"][0]["deceasedBoolean"] = True
    assert problems(resource) == {"ServiceRequest.contained[0].deceased": "business-rule"}


def test_every_problem_is_named_at_once():
    resource = changed(status="on-hold", intent="option", code=None, category=None, subject={"reference": "#x"})
    assert set(problems(resource)) == {"ServiceRequest.status", "ServiceRequest.intent", "ServiceRequest.subject"}


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r["contained"][0].update(birthDate="02/03/1948"),
     {"ServiceRequest.contained[0].birthDate": "value"}),
    (lambda r: r.update(colour="blue"), {"ServiceRequest.colour": "structure"}),
    (lambda r: r.update(subject="Patient/1"), {"ServiceRequest.subject": "structure"}),
    (lambda r: r["contained"][0]["name"][0].update(given="Pat"),
     {"ServiceRequest.contained[0].name[0].given": "structure"}),
    (lambda r: r["contained"].append({"resourceType": "Foo", "id": "f"}), {"ServiceRequest.contained[4]": "structure"}),
    (lambda r: r.pop("intent"), {"ServiceRequest.intent": "required"}),
])
def test_an_invalid_resource_is_refused_with_one_issue_per_error_at_its_path(edit, expected):
    resource = fixture("servicerequest-fylde-coast.json")
    edit(resource)
    assert problems(resource) == expected


def test_expression_for_finds_where_a_field_came_from():
    resource = changed(extension=None)
    patient = "ServiceRequest.contained.ofType(Patient)"
    assert fhir.expression_for("person.postcode") == f"{patient}.address.postalCode"
    assert fhir.expression_for("consent.sms_contact") == f"ServiceRequest.extension('{fhir.CONSENT_TO_SMS}')"
    assert fhir.expression_for("person.postcode", resource) == "ServiceRequest.contained[0].address.postalCode"


def test_a_referral_comes_from_one_of_the_taxonomys_referrer_sources_spelled_as_metrics_counts_them():
    """The drift fix: intake takes exactly shared.taxonomy's REFERRER_SOURCES ("partner", never
    "partner_organisation"), the spelling request.submitted carries and metrics filters on."""
    from shared.taxonomy import REFERRER_SOURCES, SOURCES

    referral = fhir.to_referral(fixture("servicerequest-fylde-coast.json"))
    del referral["to_check"]
    assert tuple(ReferralIn().fields["referrer"].schema.fields["organisation_type"].validate.choices) == \
        REFERRER_SOURCES
    for source in REFERRER_SOURCES:
        assert source in SOURCES
        loaded = ReferralIn().load({**referral, "referrer": {**referral["referrer"], "organisation_type": source}})
        assert loaded["referrer"]["organisation_type"] == source
    for spelling in ("partner_organisation", "coordinator"):
        with pytest.raises(ValidationError) as raised:
            ReferralIn().load({**referral, "referrer": {**referral["referrer"], "organisation_type": spelling}})
        assert [e["field"] for e in field_errors(raised.value.messages)] == ["referrer.organisation_type"]


def test_other_shapes_of_time_place_code_language_and_requester():
    resource = changed(occurrencePeriod=None, occurrenceDateTime=f"{NEXT_MONDAY}T10:30:00+00:00", priority="stat",
                       code=None, category=[{"coding": [{"system": fhir.CODE_SYSTEM, "code": "meals"}]}],
                       requester={"reference": "#pcn"}, reasonCode=[{"coding": [{"display": "Lives alone"}]}])
    patient = resource["contained"][0]
    patient["birthDate"] = "1948"
    patient["communication"] = [{"language": {"coding": [{"code": "yue"}], "text": "Cantonese"}}]
    patient["address"] = [{"use": "old", "postalCode": "SK9 1AA"}, {"text": "Flat 2, The Mill", "extension": [
        {"url": fhir.GEOLOCATION, "extension": [{"url": "latitude", "valueDecimal": 53.8},
                                                {"url": "longitude", "valueDecimal": -3.05}]}]}]
    referral = fhir.to_referral(resource)
    del referral["to_check"]
    assert referral["when"] == {"start": f"{NEXT_MONDAY}T10:30:00+00:00", "end": f"{NEXT_MONDAY}T11:30:00+00:00"}
    assert (referral["urgency"], referral["support_type"]) == ("urgent", "meals")
    assert referral["person"] == {"name": "Pat Example", "phone": "+447911123456", "address": "Flat 2, The Mill",
                                  "latitude": 53.8, "longitude": -3.05}
    assert referral["reason"].splitlines() == ["Lives alone", "", "Recently bereaved, lives alone, would welcome a "
                                               "visit.", "", "Preferred language: Cantonese."]
    assert referral["referrer"] == {"organisation_type": "health_system", "name": "Fylde Coast PCN",
                                    "organisation": "Fylde Coast PCN"}
    ReferralIn().load(referral)


@pytest.mark.parametrize("field, expression", [
    ("person.phone", "ServiceRequest.contained.ofType(Patient).telecom"),
    ("person.name", "ServiceRequest.contained.ofType(Patient).name"),
    ("person.date_of_birth", "ServiceRequest.contained.ofType(Patient).birthDate"),
    ("person.preferred_language", "ServiceRequest.contained.ofType(Patient).communication.language"),
    ("person._schema", "ServiceRequest.subject"),
    ("person", "ServiceRequest.subject"),
    ("support_type", "ServiceRequest.code"),
    ("urgency", "ServiceRequest.priority"),
    ("when._schema", "ServiceRequest.occurrence"),
    ("when.end", "ServiceRequest.occurrencePeriod.end"),
    ("when.days.0", "ServiceRequest.occurrenceTiming.repeat.dayOfWeek"),
    ("repeat.occurrences", "ServiceRequest.occurrenceTiming.repeat.count"),
    ("consent", "ServiceRequest.extension"),
    ("referrer.organisation", "ServiceRequest.requester"),
    ("reason", "ServiceRequest.note"),
    ("external_id", "ServiceRequest.identifier"),
    ("preferences.pets", "ServiceRequest"),
    ("nonsense", "ServiceRequest"),
    ("", "ServiceRequest"),
])
def test_expression_for_each_field(field, expression):
    assert fhir.expression_for(field) == expression


@pytest.mark.parametrize("name, field, expression", [
    ("servicerequest-fylde-coast.json", "person.phone", "ServiceRequest.contained[0].telecom"),
    ("servicerequest-fylde-coast.json", "consent.sms_contact", "ServiceRequest.extension[1]"),
    ("servicerequest-fylde-coast.json", "when", "ServiceRequest.occurrencePeriod"),
    ("servicerequest-ottawa-west.json", "when.part_of_day", "ServiceRequest.occurrenceTiming.repeat.when"),
    ("servicerequest-ottawa-west.json", "when._schema", "ServiceRequest.occurrenceTiming"),
    ("servicerequest-ottawa-west.json", "person.postcode", "ServiceRequest.contained[0].address.postalCode"),
    ("servicerequest-completed-unknown-code.json", "when.end", "ServiceRequest.occurrenceDateTime"),
    ("servicerequest-completed-unknown-code.json", "person.phone", "ServiceRequest.contained.ofType(Patient).telecom"),
])
def test_expression_for_a_field_of_a_given_resource(name, field, expression):
    assert fhir.expression_for(field, fixture(name)) == expression


def test_an_operation_outcome_is_valid_r4_and_keeps_only_issue_elements():
    issues = [{"severity": "error", "code": "required", "diagnostics": "ServiceRequest.subject: Field required",
               "expression": ["ServiceRequest.subject"], "field": "person"},
              {"diagnostics": "Something else"}]
    outcome = fhir.operation_outcome(issues)
    OperationOutcome.model_validate(outcome)
    assert outcome == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "required", "diagnostics": "ServiceRequest.subject: Field required",
         "expression": ["ServiceRequest.subject"]},
        {"severity": "error", "code": "processing", "diagnostics": "Something else"}]}
    empty = fhir.operation_outcome([])
    OperationOutcome.model_validate(empty)
    assert len(empty["issue"]) == 1


def test_a_problem_carries_its_issues_as_a_valid_operation_outcome():
    with pytest.raises(fhir.FhirProblem) as raised:
        fhir.to_referral(fixture("servicerequest-completed-unknown-code.json"))
    assert "completed" in str(raised.value)
    OperationOutcome.model_validate(fhir.operation_outcome(raised.value.issues))


@pytest.mark.parametrize("ours, theirs", [
    ("submitted", "active"), ("offered", "active"), ("unmatched", "active"), ("matched", "active"),
    ("completed", "completed"), ("cancelled", "revoked"),
])
def test_the_stored_resource_has_our_id_and_its_status_from_ours(ours, theirs):
    sent = fixture("servicerequest-fylde-coast.json")
    before = copy.deepcopy(sent)
    stored = fhir.stored_resource(sent, "9b2c6a52-6f0e-4d4b-9a57-1f1f3c0b7a10", ours)
    assert sent == before
    assert (stored["id"], stored["status"]) == ("9b2c6a52-6f0e-4d4b-9a57-1f1f3c0b7a10", theirs)
    assert [e for e in stored["extension"] if e["url"] == fhir.REQUEST_STATUS] == [
        {"url": fhir.REQUEST_STATUS, "valueCode": ours}]
    assert len(stored["extension"]) == 3
    ServiceRequest.model_validate(stored)
    again = fhir.stored_resource(stored, stored["id"], "completed")
    assert [e["valueCode"] for e in again["extension"] if e["url"] == fhir.REQUEST_STATUS] == ["completed"]


def test_a_stored_resource_without_extensions_gains_ours():
    stored = fhir.stored_resource(changed(extension=None), "1", "submitted")
    assert stored["extension"] == [{"url": fhir.REQUEST_STATUS, "valueCode": "submitted"}]
    ServiceRequest.model_validate(stored)


# --- as real systems send them -----------------------------------------------------------------------------------

SNOMED = "http://snomed.info/sct"
NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def coded(*codings, text=None) -> dict:
    """The Fylde Coast example with its code and category replaced."""
    code = {"coding": list(codings)} if codings else {}
    if text:
        code["text"] = text
    return changed(code=code, category=None)


@pytest.mark.parametrize("code, kind", [
    ("871731000000106", "home_visit"),  # Referral to social prescribing service (UK)
    ("306249006", "bereavement_visit"),  # Referral to bereavement counselor
    ("702982008", "carer_respite"),  # Referral to voluntary support service for carers
    ("713109004", "meals"),  # Referral to community meals service
])
def test_snomed_referral_codes_map_to_kinds_of_help(code, kind):
    referral = fhir.to_referral(coded({"system": SNOMED, "code": code}))
    assert (referral["support_type"], referral["to_check"]) == (kind, [])


def test_a_communitys_own_codes_extend_and_override_the_table():
    extra = {f"{SNOMED}|413125004": "phone_check_in", f"{SNOMED}|306249006": "bereavement_group"}
    assert fhir.to_referral(coded({"system": SNOMED, "code": "413125004"}), extra_codes=extra)["support_type"] == \
        "phone_check_in"
    assert fhir.to_referral(coded({"system": SNOMED, "code": "306249006"}), extra_codes=extra)["support_type"] == \
        "bereavement_group"
    assert fhir.to_referral(coded({"system": SNOMED, "code": "413125004"}))["support_type"] == "other"


@pytest.mark.parametrize("resource, words", [
    (coded(text="Help with the garden"), "Help with the garden"),
    (coded({"system": SNOMED, "code": "3457005", "display": "Patient referral"}), "Patient referral"),
    (coded({"system": SNOMED, "code": "1234567"}), f"{SNOMED} 1234567"),
    (coded({"system": fhir.CODE_SYSTEM, "code": "gardening"}), f"{fhir.CODE_SYSTEM} gardening"),
    (changed(code=None, category=None), "No kind of help was given"),
])
def test_an_unknown_code_or_words_alone_are_kind_other_with_the_words_kept_for_triage(resource, words):
    referral = fhir.to_referral(resource)
    assert referral["support_type"] == "other"
    assert referral["reason"].startswith(f"Asked for: {words}")
    [check] = referral["to_check"]
    assert check["field"] == "support_type" and check["value"] == words
    loaded = FHIR_REFERRAL_IN.load(referral)
    assert loaded["support_type"] == "other"


def test_the_taxonomys_other_is_never_offered_and_needs_no_skill():
    from shared.taxonomy import KINDS, SKILLS

    assert not KINDS["other"].offered and all(k.offered for n, k in KINDS.items() if n != "other")
    assert "" not in SKILLS


def test_without_occurrence_the_window_is_as_soon_as_convenient_and_a_date_is_that_whole_day():
    referral = fhir.to_referral(changed(occurrencePeriod=None), now=NOW)
    assert referral["when"] == {"start": "2030-01-01T09:00:00+00:00", "end": "2030-01-15T09:00:00+00:00"}
    day = fhir.to_referral(changed(occurrencePeriod=None, occurrenceDateTime="2030-01-07"), now=NOW,
                           zone=ZoneInfo("America/Toronto"))
    assert day["when"] == {"start": "2030-01-07T00:00:00-05:00", "end": "2030-01-08T00:00:00-05:00"}


@pytest.mark.parametrize("period, when, flagged", [
    ({"start": "2029-12-20", "end": "2030-01-20"}, {"start": "2030-01-01T09:00:00+00:00",
                                                    "end": "2030-01-21T00:00:00+00:00"}, False),
    ({"start": "2029-12-01T10:00:00Z", "end": "2029-12-02T10:00:00Z"}, {"start": "2030-01-01T09:00:00+00:00",
                                                                        "end": "2030-01-15T09:00:00+00:00"}, True),
    ({"start": "2030-01-02T10:00:00Z", "end": "2030-06-30"}, {"start": "2030-01-02T10:00:00+00:00",
                                                              "end": "2030-02-02T10:00:00+00:00"}, True),
    ({"start": "2030-01-02T10:00:00+01:00"}, {"start": "2030-01-02T10:00:00+01:00",
                                              "end": "2030-01-02T11:00:00+01:00"}, False),
    ({"start": "2031-06-01", "end": "2031-06-02"}, {"start": "2030-01-01T09:00:00+00:00",
                                                    "end": "2030-01-15T09:00:00+00:00"}, True),
])
def test_a_period_started_past_or_too_long_becomes_one_the_domain_takes_flagged_when_changed(period, when, flagged):
    referral = fhir.to_referral(changed(occurrencePeriod=period), now=NOW)
    assert referral["when"] == when
    assert [c["field"] for c in referral["to_check"]] == (["when"] if flagged else [])


def consent(decision: str, status: str = "active", patient: str = "#patient") -> dict:
    """A contained R4 Consent about the patient."""
    return {"resourceType": "Consent", "id": "consent", "status": status,
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": patient}, "provision": {"type": decision}}


@pytest.mark.parametrize("consents, expected, flagged", [
    ([consent("permit")], {"share_contact": True, "sms_contact": True}, False),
    ([consent("deny")], {"share_contact": False, "sms_contact": False}, False),
    ([consent("permit", status="proposed")], {}, True),
    ([consent("permit", patient="#someone-else")], {}, True),
    ([], {}, True),
])
def test_consent_comes_from_a_consent_resource_and_without_one_the_coordinator_confirms(consents, expected, flagged):
    resource = changed(extension=None)
    resource["contained"].extend(consents)
    ServiceRequest.model_validate(resource)
    referral = fhir.to_referral(resource)
    assert referral["consent"] == expected
    assert [c["field"] for c in referral["to_check"]] == (["consent"] if flagged else [])
    assert FHIR_REFERRAL_IN.load(referral)["consent"] == expected


ACTOR = Actor(subject="ehr@fylde-pcn.example", role="referrer", communities=("fylde-coast",),
              organisation="Fylde Coast PCN")


def test_a_phone_or_postcode_that_cannot_be_used_is_kept_and_flagged_never_refused():
    resource = fixture("servicerequest-fylde-coast.json")
    resource["contained"][0]["telecom"] = [{"system": "phone", "value": "+44 20 7946 09", "use": "mobile"}]
    resource["contained"][0]["address"][0]["postalCode"] = "ZZ99 9ZZ"
    loaded = fhir_referral(resource, ACTOR)
    assert loaded["person"]["phone"] is None and "postcode" not in loaded["person"]
    assert (loaded["person"]["latitude"], loaded["person"]["longitude"]) == (53.8175, -3.0357)  # the centre
    flags = {c["field"]: c["value"] for c in loaded["to_check"]}
    assert flags == {"person.phone": "+44 20 7946 09", "person.postcode": "ZZ99 9ZZ"}


def test_a_patient_only_referenced_is_flagged_and_named_from_its_display():
    resource = changed(subject={"reference": "Patient/9000000009", "display": "Pat Example"})
    loaded = fhir_referral(resource, ACTOR)
    assert loaded["person"]["name"] == "Pat Example"
    assert {c["field"] for c in loaded["to_check"]} == {"person", "person.postcode"}


def test_without_a_reason_or_requester_the_referral_is_the_senders_organisations():
    loaded = fhir_referral(changed(note=None, requester=None, occurrencePeriod=None), ACTOR)
    assert loaded["referrer"]["organisation"] == "Fylde Coast PCN" and loaded["reason"] == ""


def bundle(*entries) -> dict:
    """A transaction Bundle of (fullUrl, resource) entries, each POSTed."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
        for url, resource in entries]}


def test_a_bundles_patient_requester_and_consent_are_contained_in_its_service_request():
    sr = changed(contained=None, extension=None, subject={"reference": "urn:uuid:p"},
                 requester={"reference": "urn:uuid:role"})
    patient = {**fixture("servicerequest-fylde-coast.json")["contained"][0], "id": "p-on-their-server"}
    role = {"resourceType": "PractitionerRole", "practitioner": {"reference": "urn:uuid:gp"},
            "organization": {"reference": "urn:uuid:pcn"}}
    gp = {"resourceType": "Practitioner", "name": [{"family": "Rao", "given": ["Asha"], "prefix": ["Dr"]}]}
    pcn = {"resourceType": "Organization", "name": "Fylde Coast PCN"}
    agreed = {**consent("permit", patient="urn:uuid:p"), "id": None}
    sent = bundle(("urn:uuid:p", patient), ("urn:uuid:sr", sr), ("urn:uuid:role", role), ("urn:uuid:gp", gp),
                  ("urn:uuid:pcn", pcn), ("urn:uuid:c", {k: v for k, v in agreed.items() if v is not None}))
    flat, index = fhir.from_bundle(sent)
    assert index == 1
    ServiceRequest.model_validate(flat)
    assert [(c["resourceType"], c["id"]) for c in flat["contained"]] == [
        ("Patient", "b1"), ("PractitionerRole", "b2"), ("Practitioner", "b3"), ("Organization", "b4"),
        ("Consent", "b5")]
    assert flat["subject"]["reference"] == "#b1" and flat["contained"][4]["patient"]["reference"] == "#b1"
    referral = fhir.to_referral(flat)
    assert referral["person"]["name"] == "Pat Example" and referral["consent"] == {"share_contact": True,
                                                                                   "sms_contact": True}
    assert referral["referrer"]["name"] == "Dr Asha Rao" and referral["referrer"]["organisation"] == "Fylde Coast PCN"
    assert referral["to_check"] == []
    answer = fhir.transaction_response(sent, fhir.stored_resource(flat, "x", "submitted"), "x")
    assert [e["response"]["status"] for e in answer["entry"]] == ["200 OK", "201 Created", "200 OK", "200 OK",
                                                                 "200 OK", "200 OK"]
    Bundle.model_validate(answer)


@pytest.mark.parametrize("sent, expected", [
    ({"resourceType": "Bundle", "type": "searchset"}, {"Bundle.type": "not-supported"}),
    (bundle(("urn:uuid:p", {"resourceType": "Patient"})), {"Bundle.entry": "invalid"}),
    (bundle(("urn:uuid:x", {"resourceType": "Nonsense"})), {"Bundle.entry[0].resource": "structure"}),
    (bundle(("urn:uuid:p", {"resourceType": "Patient", "birthDate": "02/03/1948"})),
     {"Bundle.entry[0].resource.birthDate": "value"}),
])
def test_a_bundle_that_is_not_a_transaction_of_one_service_request_is_named_where_it_is_wrong(sent, expected):
    with pytest.raises(fhir.FhirProblem) as raised:
        fhir.from_bundle(sent)
    assert {e: i["code"] for i in raised.value.issues for e in i["expression"]} == expected


class Referral:
    """What fhir.task reads of a SupportRequest."""

    def __init__(self, status, history, outcome="", held=False, source="health_system"):
        from services.intake.domain import REFERRAL_STAGES, TimelineEntry

        self.id, self.status, self.outcome, self.held, self.source = "0b7e8f9a-1c2d-4e3f-8a9b-0c1d2e3f4a5b", status, \
            outcome, held, source
        self.timeline = [TimelineEntry(what) for what in history]
        self.created_at = self.updated_at = NOW
        self.external_id, self.referrer_organisation = "REF-1", "Fylde Coast PCN"
        self._stages = REFERRAL_STAGES

    def referral_stage(self):
        stage, meaning = self._stages[self.status]
        return (stage, self.outcome) if self.status in ("cancelled", "signposted") else (stage, meaning)


@pytest.mark.parametrize("referral, status, business", [
    (Referral("submitted", ["submitted"]), "accepted", "Received"),
    (Referral("submitted", ["submitted"], held=True), "received", "Received"),
    (Referral("offered", ["submitted", "offered"]), "in-progress", "Looking for a volunteer"),
    (Referral("unmatched", ["submitted", "offered", "unmatched"]), "in-progress", "No volunteer found yet"),
    (Referral("matched", ["submitted", "offered", "accepted", "matched"]), "in-progress", "Volunteer found"),
    (Referral("completed", ["submitted", "offered", "matched", "completed"]), "completed", "Help given"),
    (Referral("cancelled", ["submitted", "cancelled"], "Family arranged help"), "rejected", "Closed"),
    (Referral("cancelled", ["submitted", "offered", "unmatched", "cancelled"], "Nobody nearby could help"), "failed",
     "Closed"),
    (Referral("cancelled", ["submitted", "offered", "matched", "cancelled"], "Moved away"), "cancelled", "Closed"),
    (Referral("signposted", ["submitted", "offered", "unmatched", "signposted"], "Signposted to Lytham Grief Café"),
     "failed", "Could not be met by a volunteer"),
    (Referral("signposted", ["submitted", "signposted"], "Signposted to Age UK Help at Home"), "rejected",
     "Could not be met by a volunteer"),
])
def test_a_referrals_task_follows_it_in_plain_words(referral, status, business):
    task = fhir.task(referral)
    Task.model_validate(task)
    assert (task["status"], task["businessStatus"]["text"]) == (status, business)
    assert task["focus"] == {"reference": f"ServiceRequest/{referral.id}", "type": "ServiceRequest"}
    if referral.status in ("cancelled", "signposted"):
        assert task["statusReason"]["text"] == referral.outcome and task["executionPeriod"]["end"]
    else:
        assert "statusReason" not in task


def test_a_task_of_a_referral_made_without_fhir_points_at_it_by_identifier():
    task = fhir.task(Referral("submitted", ["submitted"], source="pcn"))
    Task.model_validate(task)
    assert task["focus"]["identifier"] == {"system": fhir.REFERRAL_ID, "value": "0b7e8f9a-1c2d-4e3f-8a9b-0c1d2e3f4a5b"}


def test_the_capability_statement_is_valid_r4_and_names_what_is_supported():
    statement = fhir.capability_statement("https://ccs.example/fhir")
    CapabilityStatement.model_validate(statement)
    [rest] = statement["rest"]
    assert {r["type"] for r in rest["resource"]} == {"ServiceRequest", "Task"}
    assert rest["interaction"] == [{"code": "transaction"}] and statement["fhirVersion"] == "4.0.1"


def test_a_patient_without_a_name_or_with_an_impossible_one_is_taken_and_flagged():
    nameless = fixture("servicerequest-fylde-coast.json")
    nameless["contained"][0]["name"] = [{"use": "official", "text": "   "}]
    del nameless["subject"]["display"]
    loaded = fhir_referral(nameless, ACTOR)
    assert loaded["person"]["name"] == "Name not given"
    assert [c["field"] for c in loaded["to_check"]] == ["person.name"]
    long = fixture("servicerequest-fylde-coast.json")
    long["contained"][0]["name"] = [{"text": "x" * 300}]
    loaded = fhir_referral(long, ACTOR)
    assert loaded["person"]["name"] == "Name not given" and loaded["to_check"][0]["value"] == "x" * 300


def test_every_request_status_has_a_stage_for_the_referrer_a_service_request_status_and_a_task_status():
    """A request's status is told three ways (the referrer's words, FHIR ServiceRequest.status, Task.status): a new
    status added to the taxonomy must be added to each, or a referrer's page and a partner's FHIR read would fail."""
    from services.intake.domain import REFERRAL_HISTORY, REFERRAL_STAGES
    from shared.taxonomy import REQUEST_STATUSES

    assert set(REFERRAL_STAGES) == set(fhir.STATUSES) == set(fhir.TASK_STATUSES) == set(REQUEST_STATUSES)
    assert set(REFERRAL_HISTORY.values()) <= set(REQUEST_STATUSES)
    assert set(fhir.STATUSES.values()) <= {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error"}
    # FHIR R4's value sets (the models do not check them): request-status and task-status
    assert set(fhir.TASK_STATUSES.values()) <= {"draft", "requested", "received", "accepted", "rejected", "ready",
                                                "cancelled", "in-progress", "on-hold", "failed", "completed",
                                                "entered-in-error"}
