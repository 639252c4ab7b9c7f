"""FHIR ServiceRequests as referrals: the mapping, the problems it names, OperationOutcomes and stored resources."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.servicerequest import ServiceRequest
from marshmallow import ValidationError

from services.intake import fhir
from services.intake.entrypoints.api import ReferralIn
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
        "when": {"start": f"{NEXT_MONDAY}T14:00:00Z", "end": f"{NEXT_MONDAY}T16:00:00Z"},
        "consent": {"share_contact": True, "sms_contact": True},
        "referrer": {"organisation_type": "health_system", "name": "Dr Asha Rao", "organisation": "Fylde Coast PCN",
                     "contact": "asha.rao@fylde-pcn.example"},
        "reason": "Recently bereaved, lives alone, would welcome a visit.",
        "external_id": "REF-2030-0001",
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
    loaded = ReferralIn().load(fhir.to_referral(fixture(name)))
    assert loaded["referrer"]["organisation_type"] == "health_system"
    assert loaded["person"]["area"] in ("FY1", "K2P")


@pytest.mark.parametrize("name, expected", [
    ("servicerequest-no-subject.json", {"ServiceRequest.subject": "required"}),
    ("servicerequest-completed-unknown-code.json", {"ServiceRequest.status": "business-rule",
                                                    "ServiceRequest.subject": "not-supported",
                                                    "ServiceRequest.code": "code-invalid"}),
])
def test_the_bad_examples_name_each_problem(name, expected):
    assert problems(fixture(name)) == expected


def test_another_resource_type_is_refused():
    assert problems({"resourceType": "Patient", "id": "p"}) == {"ServiceRequest": "invalid"}
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
    (changed(subject={"reference": "#nobody"}), "ServiceRequest.subject", "not-supported"),
    (changed(subject={"display": "Pat Example"}), "ServiceRequest.subject", "not-supported"),
    (changed(subject={"reference": "#gp"}), "ServiceRequest.subject", "invalid"),
    (changed(code={"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}), "ServiceRequest.code",
     "code-invalid"),
    (changed(code={"text": "Shopping"}, category=None), "ServiceRequest.code", "required"),
    (changed(code=None, category=None), "ServiceRequest.code", "required"),
    (changed(occurrencePeriod=None, occurrenceDateTime="2030-01-07"), "ServiceRequest.occurrenceDateTime", "value"),
])
def test_what_we_cannot_take_is_named(resource, expression, code):
    assert problems(resource) == {expression: code}


def test_a_deceased_patient_is_refused():
    resource = fixture("servicerequest-fylde-coast.json")
    resource["contained"][0]["deceasedBoolean"] = True
    assert problems(resource) == {"ServiceRequest.contained[0].deceased": "business-rule"}


def test_every_problem_is_named_at_once():
    resource = changed(status="on-hold", intent="option", code=None, category=None, subject={"reference": "#x"})
    assert set(problems(resource)) == {"ServiceRequest.status", "ServiceRequest.intent", "ServiceRequest.code",
                                       "ServiceRequest.subject"}


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


def test_missing_pieces_are_left_for_referral_in_to_name_and_expression_for_finds_them():
    resource = changed(extension=None)
    del resource["contained"][0]["address"][0]["postalCode"]
    referral = fhir.to_referral(resource)
    with pytest.raises(ValidationError) as raised:
        ReferralIn().load(referral)
    named = {e["field"]: fhir.expression_for(e["field"]) for e in field_errors(raised.value.messages)}
    patient = "ServiceRequest.contained.ofType(Patient)"
    assert named == {
        "consent.share_contact": f"ServiceRequest.extension('{fhir.CONSENT_TO_SHARE}')",
        "consent.sms_contact": f"ServiceRequest.extension('{fhir.CONSENT_TO_SMS}')",
        "person.postcode": f"{patient}.address.postalCode",
        "person.latitude": f"{patient}.address.extension('{fhir.GEOLOCATION}')",
        "person.longitude": f"{patient}.address.extension('{fhir.GEOLOCATION}')",
    }
    assert fhir.expression_for("person.postcode", resource) == "ServiceRequest.contained[0].address.postalCode"


def test_without_a_reason_requester_or_window_referral_in_names_them():
    referral = fhir.to_referral(changed(note=None, requester=None, occurrencePeriod=None))
    with pytest.raises(ValidationError) as raised:
        ReferralIn().load(referral)
    assert {fhir.expression_for(e["field"]) for e in field_errors(raised.value.messages)} == {
        "ServiceRequest.note", "ServiceRequest.requester", "ServiceRequest.occurrence"}


def test_a_referral_comes_from_one_of_the_taxonomys_referrer_sources_spelled_as_metrics_counts_them():
    """The drift fix: intake takes exactly shared.taxonomy's REFERRER_SOURCES ("partner", never
    "partner_organisation"), the spelling request.submitted carries and metrics filters on."""
    from shared.taxonomy import REFERRER_SOURCES, SOURCES

    referral = fhir.to_referral(fixture("servicerequest-fylde-coast.json"))
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


def test_a_bad_phone_is_named_at_the_patients_telecom():
    resource = fixture("servicerequest-fylde-coast.json")
    resource["contained"][0]["telecom"] = [{"system": "phone", "value": "not a phone", "use": "mobile"}]
    with pytest.raises(ValidationError) as raised:
        ReferralIn().load(fhir.to_referral(resource))
    [error] = field_errors(raised.value.messages)
    assert fhir.expression_for(error["field"], resource) == "ServiceRequest.contained[0].telecom"


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
