"""HL7 FHIR R4 ServiceRequests from health systems, as referrals: reading one, naming its problems, storing it.

Resources are checked with fhir.resources' R4B models (R4B is R4 with fixes; R4 ServiceRequests validate as R4B).
The patient must be contained in the ServiceRequest: we do not fetch resources from other servers. Our own
definitions, under `BASE`:

- `CODE_SYSTEM`: the kinds of help, whose codes are `shared.taxonomy.KINDS`' keys, in `code` (or `category`);
- `CONSENT_TO_SHARE` and `CONSENT_TO_SMS`: ServiceRequest extensions with a `valueBoolean`, the patient's answers;
- `REQUEST_STATUS`: on the stored resource, our status (`submitted`, `offered` ...) as a `valueCode`.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime, timedelta
from typing import Any

import pydantic

from shared.taxonomy import KINDS

BASE = "https://compassionate-communities.example/fhir"
CODE_SYSTEM = f"{BASE}/CodeSystem/kind-of-help"
CONSENT_TO_SHARE = f"{BASE}/StructureDefinition/consent-to-share"
CONSENT_TO_SMS = f"{BASE}/StructureDefinition/consent-to-sms"
REQUEST_STATUS = f"{BASE}/StructureDefinition/request-status"
GEOLOCATION = "http://hl7.org/fhir/StructureDefinition/geolocation"
CONSENTS = {"share_contact": CONSENT_TO_SHARE, "sms_contact": CONSENT_TO_SMS}

INTENTS = ("proposal", "plan", "order", "original-order")
PRIORITIES = {"routine": "routine", "urgent": "soon", "asap": "urgent", "stat": "urgent"}
PARTS_OF_DAY = {"MORN": "morning", "AFT": "afternoon", "EVE": "evening"}
POINT_WINDOW = timedelta(hours=1)  # an occurrenceDateTime is when the help starts: the window is this long
# Our status -> the ServiceRequest's. Everything still open is `active` (unmatched too: coordinators keep
# looking); the exact status is in the REQUEST_STATUS extension.
STATUSES = {"submitted": "active", "offered": "active", "unmatched": "active", "matched": "active",
            "completed": "completed", "cancelled": "revoked"}

PATIENT = "ServiceRequest.contained.ofType(Patient)"
EXPRESSIONS = {
    "person": "ServiceRequest.subject",
    "person.name": f"{PATIENT}.name",
    "person.phone": f"{PATIENT}.telecom",
    "person.address": f"{PATIENT}.address",
    "person.postcode": f"{PATIENT}.address.postalCode",
    "person.latitude": f"{PATIENT}.address.extension('{GEOLOCATION}')",
    "person.longitude": f"{PATIENT}.address.extension('{GEOLOCATION}')",
    "person.preferred_language": f"{PATIENT}.communication.language",
    "person.date_of_birth": f"{PATIENT}.birthDate",
    "support_type": "ServiceRequest.code",
    "urgency": "ServiceRequest.priority",
    "when": "ServiceRequest.occurrence",
    "when.start": "ServiceRequest.occurrencePeriod.start",
    "when.end": "ServiceRequest.occurrencePeriod.end",
    "when.days": "ServiceRequest.occurrenceTiming.repeat.dayOfWeek",
    "when.part_of_day": "ServiceRequest.occurrenceTiming.repeat.when",
    "repeat": "ServiceRequest.occurrenceTiming.repeat",
    "repeat.every_weeks": "ServiceRequest.occurrenceTiming.repeat.period",
    "repeat.occurrences": "ServiceRequest.occurrenceTiming.repeat.count",
    "consent": "ServiceRequest.extension",
    **{f"consent.{kind}": f"ServiceRequest.extension('{url}')" for kind, url in CONSENTS.items()},
    "referrer": "ServiceRequest.requester",
    "reason": "ServiceRequest.note",
    "external_id": "ServiceRequest.identifier",
}


class FhirProblem(Exception):
    """A resource we cannot take as a referral; `issues` are OperationOutcome issues naming each problem."""

    def __init__(self, issues: list[dict[str, Any]]):
        super().__init__("; ".join(issue["diagnostics"] for issue in issues))
        self.issues = issues


def issue(code: str, diagnostics: str, expression: str, severity: str = "error") -> dict[str, Any]:
    """One OperationOutcome issue."""
    return {"severity": severity, "code": code, "diagnostics": diagnostics, "expression": [expression]}


# --- checking the resource ---------------------------------------------------------------------------------------


def fhirpath(loc: tuple, root: str = "ServiceRequest") -> str:
    """The FHIRPath of a pydantic error location: ('contained', 0, 'birthDate') -> ServiceRequest.contained[0]..."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "resource_type":
            path += ".resourceType"
        elif re.fullmatch(r"_?[A-Za-z][A-Za-z0-9]*(_fhir)?", str(part)):
            path += "." + str(part).removesuffix("_fhir")
    return path


def structure_issues(error: pydantic.ValidationError) -> list[dict[str, Any]]:
    """One issue per pydantic error."""
    issues = []
    for e in error.errors():
        kind = e["type"]
        code = "required" if kind.split(".")[-1] == "missing" else \
            "structure" if kind in ("extra_forbidden", "json_invalid") or kind.endswith("_type") else "value"
        message = " ".join(str(e["msg"]).removeprefix("Value error, ").split())
        where = fhirpath(e["loc"])
        issues.append(issue(code, f"{where}: {message}", where))
    return issues


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as fhir.resources' R4B ServiceRequest reads it (JSON types, booleans as booleans)."""
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.servicerequest import ServiceRequest

    kind = resource.get("resourceType")
    if kind != "ServiceRequest":
        raise FhirProblem([issue("invalid", f"Expected a ServiceRequest, not {kind!r}.", "ServiceRequest")])
    unknown = []
    for index, item in enumerate(resource.get("contained") or []):
        if isinstance(item, dict) and isinstance(item.get("resourceType"), str):
            try:
                get_fhir_model_class(item["resourceType"])
            except ValueError:
                unknown.append(issue("structure", f"{item['resourceType']!r} is not a FHIR R4 resource type.",
                                     f"ServiceRequest.contained[{index}]"))
    if unknown:
        raise FhirProblem(unknown)
    try:
        return ServiceRequest.model_validate(resource).model_dump(mode="json")
    except pydantic.ValidationError as err:
        raise FhirProblem(structure_issues(err)) from err
    except (ValueError, TypeError, KeyError) as err:
        raise FhirProblem([issue("structure", f"Not a valid ServiceRequest: {err}", "ServiceRequest")]) from err


# --- reading the parts -------------------------------------------------------------------------------------------


def contained(sr: dict[str, Any], reference: dict[str, Any] | None) -> tuple[int, dict[str, Any]] | None:
    """The contained resource a local reference (`#id`) points at, with its index; None if it is not one."""
    target = (reference or {}).get("reference") or ""
    if not target.startswith("#") or len(target) < 2:
        return None
    for index, item in enumerate(sr.get("contained") or []):
        if item.get("id") == target[1:]:
            return index, item
    return None


def ranked(items: list[dict[str, Any]], order: tuple[str | None, ...]) -> list[dict[str, Any]]:
    """Items by their `use` in `order` (then their `rank`), leaving out any whose use is not in it."""
    return sorted((i for i in items if i.get("use") in order),
                  key=lambda i: (order.index(i.get("use")), i.get("rank") or 1_000_000))


def human_name(names: list[dict[str, Any]]) -> str | None:
    """A HumanName as people write it: its text, else prefix, given names and family name."""
    for name in ranked(names or [], ("usual", "official", None, "temp", "nickname", "anonymous", "maiden")):
        text = name.get("text") or " ".join([*name.get("prefix", []), *name.get("given", []), name.get("family", "")])
        if text.strip():
            return " ".join(text.split())
    return None


def telecom_value(points: list[dict[str, Any]], systems: tuple[str, ...]) -> str | None:
    """The best ContactPoint value of one of `systems`: a mobile first."""
    usable = [p for p in points or [] if p.get("system") in systems and p.get("value")]
    best = ranked(usable, ("mobile", "home", None, "work", "temp"))
    return best[0]["value"] if best else None


def extension(items: list[dict[str, Any]], url: str) -> tuple[int, dict[str, Any]] | None:
    """The first extension with `url`, with its index."""
    for index, item in enumerate(items or []):
        if item.get("url") == url:
            return index, item
    return None


def person_from(patient: dict[str, Any], display: str | None) -> tuple[dict[str, Any], str | None]:
    """The person, as PersonIn takes them, and a language we could not put in `preferred_language`."""
    person: dict[str, Any] = {}
    if name := human_name(patient.get("name")) or display:
        person["name"] = name
    person["phone"] = telecom_value(patient.get("telecom"), ("phone", "sms"))
    addresses = ranked(patient.get("address") or [], ("home", None, "temp", "work"))
    if addresses:
        address = addresses[0]
        parts = address.get("line") or ([address["text"]] if address.get("text") else [])
        person["address"] = ", ".join([*parts, *([address["city"]] if address.get("city") else [])])
        if address.get("postalCode"):
            person["postcode"] = address["postalCode"]
        if found := extension(address.get("extension"), GEOLOCATION):
            for part in found[1].get("extension") or []:
                if part.get("url") in ("latitude", "longitude") and part.get("valueDecimal") is not None:
                    person[part["url"]] = part["valueDecimal"]
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", patient.get("birthDate") or ""):
        person["date_of_birth"] = patient["birthDate"]
    unplaced = None
    languages = sorted(patient.get("communication") or [], key=lambda c: not c.get("preferred"))
    if languages:
        language = languages[0].get("language") or {}
        code = next((c["code"] for c in language.get("coding") or [] if c.get("code")), "")
        primary = code.split("-")[0].lower()
        if re.fullmatch(r"[a-z]{2}", primary):
            person["preferred_language"] = primary
        else:
            unplaced = language.get("text") or code or None
    return person, unplaced


def referrer_from(sr: dict[str, Any]) -> dict[str, Any]:
    """Who referred, from the requester: a contained Practitioner, PractitionerRole or Organization, or a display."""
    requester = sr.get("requester")
    if not requester:
        return {"organisation_type": "health_system"}
    name, organisation, contact = requester.get("display"), None, None
    if requester.get("type") == "Organization":
        organisation = requester.get("display")
    if found := contained(sr, requester):
        target = found[1]
        kind = target["resourceType"]
        if kind == "Practitioner":
            name = human_name(target.get("name")) or name
        elif kind == "PractitionerRole":
            practitioner = contained(sr, target.get("practitioner"))
            name = (human_name(practitioner[1].get("name")) if practitioner else None) or \
                (target.get("practitioner") or {}).get("display") or name
            employer = contained(sr, target.get("organization"))
            organisation = (employer[1].get("name") if employer else None) or \
                (target.get("organization") or {}).get("display")
        elif kind == "Organization":
            organisation = target.get("name") or organisation
        contact = telecom_value(target.get("telecom"), ("phone", "email"))
    if organisation is None:
        organisations = [c for c in sr.get("contained") or [] if c["resourceType"] == "Organization"]
        if len(organisations) == 1:
            organisation = organisations[0].get("name")
    referrer = {"organisation_type": "health_system", "name": name or organisation, "organisation": organisation,
                "contact": contact}
    return {key: value for key, value in referrer.items() if value}


def kind_of_help(sr: dict[str, Any]) -> str | dict[str, Any]:
    """The kind of help, from a coding in our code system in `code` or `category`; an issue if there is none."""
    concepts = [sr.get("code") or {}, *(sr.get("category") or [])]
    codings = [coding for concept in concepts for coding in concept.get("coding") or []]
    for coding in codings:
        if coding.get("system") == CODE_SYSTEM and coding.get("code") in KINDS:
            return coding["code"]
    ours = [coding.get("code") for coding in codings if coding.get("system") == CODE_SYSTEM]
    if ours:
        return issue("code-invalid", f"{', '.join(map(str, ours))} is not a kind of help in {CODE_SYSTEM}; "
                     f"known codes: {', '.join(sorted(KINDS))}.", "ServiceRequest.code")
    return issue("code-invalid" if codings else "required",
                 f"Give the kind of help as a coding with system {CODE_SYSTEM} and one of the codes "
                 f"{', '.join(sorted(KINDS))}.", "ServiceRequest.code")


def window_from(sr: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]:
    """The time window and repeat, from occurrencePeriod, occurrenceDateTime or occurrenceTiming; or an issue."""
    if period := sr.get("occurrencePeriod"):
        return {key: period[key] for key in ("start", "end") if key in period}, None, None
    if moment := sr.get("occurrenceDateTime"):
        try:
            start = datetime.fromisoformat(moment) if "T" in moment else None
        except ValueError:
            start = None
        if start is None or start.tzinfo is None:
            return None, None, issue("value", "occurrenceDateTime needs a time of day with its time zone "
                                     "(or give an occurrencePeriod).", "ServiceRequest.occurrenceDateTime")
        return {"start": start.isoformat(), "end": (start + POINT_WINDOW).isoformat()}, None, None
    if timing := sr.get("occurrenceTiming"):
        rule = timing.get("repeat") or {}
        when: dict[str, Any] = {}
        if rule.get("dayOfWeek"):
            when["days"] = rule["dayOfWeek"]
        parts = [PARTS_OF_DAY[code.split(".")[0]] for code in rule.get("when") or []
                 if code.split(".")[0] in PARTS_OF_DAY]
        if parts:
            when["part_of_day"] = parts[0]
        repeat = None
        if rule.get("periodUnit") == "wk" and rule.get("count") and rule.get("frequency", 1) == 1:
            period = rule.get("period", 1)
            repeat = {"every_weeks": int(period) if float(period).is_integer() else period,
                      "occurrences": rule["count"]}
        return when, repeat, None
    return None, None, None


def to_referral(resource: dict[str, Any]) -> dict[str, Any]:
    """A ServiceRequest as a referral that ReferralIn loads; raises FhirProblem naming what we cannot take."""
    sr = validated(resource)
    problems = []
    if sr.get("status") != "active":
        why = "a draft is not yet ready to act on" if sr.get("status") == "draft" else f"this one is {sr.get('status')}"
        problems.append(issue("business-rule", f"Only an active ServiceRequest is taken as a referral: {why}.",
                              "ServiceRequest.status"))
    if sr.get("intent") not in INTENTS:
        problems.append(issue("not-supported", f"intent {sr.get('intent')!r} is not taken as a referral; "
                              f"use one of {', '.join(INTENTS)}.", "ServiceRequest.intent"))
    if sr.get("doNotPerform"):
        problems.append(issue("business-rule", "A ServiceRequest not to do something is not a referral.",
                              "ServiceRequest.doNotPerform"))
    if sr.get("priority", "routine") not in PRIORITIES:
        problems.append(issue("code-invalid", f"priority must be one of {', '.join(PRIORITIES)}.",
                              "ServiceRequest.priority"))
    subject = sr.get("subject") or {}
    patient = contained(sr, subject)
    if patient is None:
        problems.append(issue("not-supported", "The patient must be contained in the ServiceRequest, with subject "
                              "referring to it as '#id': we do not fetch patients from other servers.",
                              "ServiceRequest.subject"))
    elif patient[1]["resourceType"] != "Patient":
        problems.append(issue("invalid", f"The subject must be a Patient, not a {patient[1]['resourceType']}.",
                              "ServiceRequest.subject"))
    elif patient[1].get("deceasedBoolean") or patient[1].get("deceasedDateTime"):
        problems.append(issue("business-rule", "The patient is recorded as deceased: refer the person who needs "
                              "support.", f"ServiceRequest.contained[{patient[0]}].deceased"))
    kind = kind_of_help(sr)
    if isinstance(kind, dict):
        problems.append(kind)
    when, repeat, timing_problem = window_from(sr)
    if timing_problem:
        problems.append(timing_problem)
    if problems:
        raise FhirProblem(problems)

    person, unplaced_language = person_from(patient[1], subject.get("display"))
    reasons = [c.get("text") or ", ".join(x["display"] for x in c.get("coding") or [] if x.get("display"))
               for c in sr.get("reasonCode") or []]
    reasons += [note.get("text") for note in sr.get("note") or []]
    reasons = [r.strip() for r in reasons if r and r.strip()]
    if reasons and unplaced_language:
        reasons.append(f"Preferred language: {unplaced_language}.")
    consent = {}
    for kind_of_consent, url in CONSENTS.items():
        if found := extension(sr.get("extension"), url):
            consent[kind_of_consent] = found[1].get("valueBoolean")
    referral: dict[str, Any] = {
        "person": person,
        "support_type": kind,
        "urgency": PRIORITIES[sr.get("priority", "routine")],
        "consent": consent,
        "referrer": referrer_from(sr),
    }
    if when is not None:
        referral["when"] = when
    if repeat is not None:
        referral["repeat"] = repeat
    if reasons:
        referral["reason"] = "\n\n".join(reasons)
    identifiers = [i["value"] for i in ranked(sr.get("identifier") or [], ("official", "usual", None, "secondary"))
                   if i.get("value")]
    if identifiers:
        referral["external_id"] = identifiers[0]
    return referral


# --- answering -----------------------------------------------------------------------------------------------------


def expression_for(field: str, resource: dict[str, Any] | None = None) -> str:
    """Where a ReferralIn field (`person.phone`, as field_errors names it) came from in the ServiceRequest.

    Without the resource the patient is `ServiceRequest.contained.ofType(Patient)`; with it, its own
    `ServiceRequest.contained[i]`, and a consent extension that is there is named by its index.
    """
    parts = [part for part in field.split(".") if part != "_schema"]
    while parts and ".".join(parts) not in EXPRESSIONS:
        parts.pop()
    key = ".".join(parts)
    expression = EXPRESSIONS.get(key, "ServiceRequest")
    if not isinstance(resource, dict):
        return expression
    if expression.startswith(PATIENT) and (found := contained(resource, resource.get("subject"))):
        return f"ServiceRequest.contained[{found[0]}]" + expression.removeprefix(PATIENT)
    if key.startswith("consent.") and (found := extension(resource.get("extension"), CONSENTS[parts[1]])):
        return f"ServiceRequest.extension[{found[0]}]"
    if key == "when":
        for choice in ("occurrencePeriod", "occurrenceDateTime", "occurrenceTiming"):
            if choice in resource:
                return f"ServiceRequest.{choice}"
    if key in ("when.start", "when.end") and "occurrenceDateTime" in resource:
        return "ServiceRequest.occurrenceDateTime"
    return expression


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    """An OperationOutcome resource with these issues (at least one)."""
    kept = [{key: value for key, value in i.items() if key in ("severity", "code", "details", "diagnostics",
                                                                  "location", "expression") and value}
            for i in issues]
    kept = [{"severity": "error", "code": "processing", **i} for i in kept] or [
        {"severity": "error", "code": "processing", "diagnostics": "The request could not be processed."}]
    return {"resourceType": "OperationOutcome", "issue": kept}


def stored_resource(resource: dict[str, Any], id: str, status: str) -> dict[str, Any]:
    """The ServiceRequest as stored: our id, its status from ours, and ours in the REQUEST_STATUS extension."""
    stored = copy.deepcopy(resource)
    stored["id"] = id
    stored["status"] = STATUSES.get(status, "unknown")
    others = [e for e in stored.get("extension") or [] if e.get("url") != REQUEST_STATUS]
    stored["extension"] = [*others, {"url": REQUEST_STATUS, "valueCode": status}]
    return stored
