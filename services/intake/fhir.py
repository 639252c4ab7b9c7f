"""HL7 FHIR R4 referrals from health systems, as UK GP systems, NHS e-RS / social prescribing tools and Ontario
systems send them: a ServiceRequest (alone, or in a transaction Bundle with its Patient and Consent), read into a
referral; what cannot be used is kept and flagged for a coordinator, never refused. Only what is not a valid R4
resource (or not a request to act on: a draft, a do-not-perform) is refused, with an OperationOutcome naming each
problem by its FHIRPath. Each referral's progress goes back as a Task (`task`).

Resources are checked with fhir.resources' R4B models (R4B is R4 with fixes; R4 resources validate as R4B). We
fetch nothing from other servers: the patient is contained in the ServiceRequest, or an entry of the Bundle its
`subject` names (a `urn:uuid:` fullUrl); a patient only referenced is flagged for the coordinator. Our own
definitions, under `BASE`:

- `CODE_SYSTEM`: the kinds of help, whose codes are `shared.taxonomy.KINDS`' keys, in `code` (or `category`);
  SNOMED CT referral codes map through REFERRAL_CODES and a community's own `referral_codes`;
- `CONSENT_TO_SHARE` and `CONSENT_TO_SMS`: ServiceRequest extensions with a `valueBoolean` (a Consent resource
  does as well);
- `REQUEST_STATUS`: on the stored resource, our status (`submitted`, `offered` ...) as a `valueCode`;
- `REFERRAL_STAGE`: the code system of a Task's businessStatus (the referral's stage in its referrer's words).
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

import pydantic

from shared.taxonomy import KINDS

BASE = "https://compassionate-communities.example/fhir"
CODE_SYSTEM = f"{BASE}/CodeSystem/kind-of-help"
REFERRAL_STAGE = f"{BASE}/CodeSystem/referral-stage"
REFERRAL_ID = f"{BASE}/referral"
CONSENT_TO_SHARE = f"{BASE}/StructureDefinition/consent-to-share"
CONSENT_TO_SMS = f"{BASE}/StructureDefinition/consent-to-sms"
REQUEST_STATUS = f"{BASE}/StructureDefinition/request-status"
GEOLOCATION = "http://hl7.org/fhir/StructureDefinition/geolocation"
SNOMED = "http://snomed.info/sct"
CONSENTS = {"share_contact": CONSENT_TO_SHARE, "sms_contact": CONSENT_TO_SMS}

# SNOMED CT referral procedures, to the kind of help each asks for ("<system>|<code>": kind); a community adds its
# own (or maps one of these otherwise) with `referral_codes` in communities.json. Where they come from, each checked:
# - 871731000000106 |Referral to social prescribing service|: the UK edition's national social prescribing code
#   (NHS England's, used in EMIS Web and SystmOne); social prescribing's usual ask of a programme like this one is
#   someone to visit (befriending);
# - the others are international concepts in HL7's "SNOMED CT Patient Referral" value set
#   (http://hl7.org/fhir/ValueSet/referral-type, FHIR STU3 expansion of April 2017), names as there.
# No concept for befriending itself or for transport to appointments was found in either; a community whose
# systems send one adds it.
REFERRAL_CODES: dict[str, str] = {
    f"{SNOMED}|871731000000106": "home_visit",  # Referral to social prescribing service (UK)
    f"{SNOMED}|306249006": "bereavement_visit",  # Referral to bereavement counselor
    f"{SNOMED}|702982008": "carer_respite",  # Referral to voluntary support service for carers
    f"{SNOMED}|713109004": "meals",  # Referral to community meals service
}

INTENTS = ("proposal", "plan", "order", "original-order")
PRIORITIES = {"routine": "routine", "urgent": "soon", "asap": "urgent", "stat": "urgent"}
PARTS_OF_DAY = {"MORN": "morning", "AFT": "afternoon", "EVE": "evening"}
POINT_WINDOW = timedelta(hours=1)  # an occurrenceDateTime is when the help starts: the window is this long
SOON_AS_CONVENIENT = timedelta(days=14)  # the window of a referral that says no time
LONGEST_WINDOW = timedelta(days=31)  # domain.LONGEST_WINDOW: a one-off window is at most this long
AHEAD = timedelta(days=365)  # domain.WINDOW_AHEAD: and ends at most this far ahead
# Our status -> the ServiceRequest's. Everything still open is `active` (unmatched too: coordinators keep
# looking); the exact status is in the REQUEST_STATUS extension.
STATUSES = {"submitted": "active", "offered": "active", "unmatched": "active", "matched": "active",
            "completed": "completed", "cancelled": "revoked", "signposted": "revoked"}

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


def structure_issues(error: pydantic.ValidationError, root: str = "ServiceRequest") -> list[dict[str, Any]]:
    """One issue per pydantic error, named from `root`."""
    issues = []
    for e in error.errors():
        kind = e["type"]
        code = "required" if kind.split(".")[-1] == "missing" else \
            "structure" if kind in ("extra_forbidden", "json_invalid") or kind.endswith("_type") else "value"
        message = " ".join(str(e["msg"]).removeprefix("Value error, ").split())
        where = fhirpath(e["loc"], root)
        issues.append(issue(code, f"{where}: {message}", where))
    return issues


def unknown_types(items: list[Any], where: str) -> list[dict[str, Any]]:
    """An issue for each resource among `items` whose resourceType is not one of FHIR R4's."""
    from fhir.resources.R4B import get_fhir_model_class

    unknown = []
    for index, item in enumerate(items or []):
        kind = item.get("resourceType") if isinstance(item, dict) else None
        if isinstance(kind, str):
            try:
                get_fhir_model_class(kind)
            except (ValueError, KeyError):
                unknown.append(issue("structure", f"{kind!r} is not a FHIR R4 resource type.", f"{where}[{index}]"))
    return unknown


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as fhir.resources' R4B ServiceRequest reads it (JSON types, booleans as booleans)."""
    from fhir.resources.R4B.servicerequest import ServiceRequest

    kind = resource.get("resourceType")
    if kind != "ServiceRequest":
        raise FhirProblem([issue("invalid", f"Expected a ServiceRequest (or a transaction Bundle), not {kind!r}.",
                                 "ServiceRequest")])
    if unknown := unknown_types(resource.get("contained"), "ServiceRequest.contained"):
        raise FhirProblem(unknown)
    try:
        return ServiceRequest.model_validate(resource).model_dump(mode="json")
    except pydantic.ValidationError as err:
        raise FhirProblem(structure_issues(err)) from err
    except (ValueError, TypeError, KeyError) as err:
        raise FhirProblem([issue("structure", f"Not a valid ServiceRequest: {err}", "ServiceRequest")]) from err


# --- a transaction Bundle ------------------------------------------------------------------------------------------

BUNDLE_TYPES = ("transaction", "batch")
# What a Bundle's ServiceRequest may point at in the Bundle, and where in each such resource references go on.
FOLLOWED = {"ServiceRequest": ("subject", "requester"), "PractitionerRole": ("practitioner", "organization"),
            "Consent": ("patient",)}


def from_bundle(bundle: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A transaction Bundle's ServiceRequest with what it refers to in the Bundle (its Patient, its requester, and
    every Consent) contained in it, references rewritten to `#id`; and the index of its entry. Raises FhirProblem
    naming each problem of the Bundle by its place in it (`Bundle.entry[1].resource.subject`)."""
    from fhir.resources.R4B.bundle import Bundle

    entries = bundle.get("entry") if isinstance(bundle.get("entry"), list) else []
    if unknown := unknown_types([e.get("resource") if isinstance(e, dict) else None for e in entries],
                                "Bundle.entry"):
        raise FhirProblem([{**i, "expression": [i["expression"][0] + ".resource"]} for i in unknown])
    try:
        checked = Bundle.model_validate(bundle).model_dump(mode="json")
    except pydantic.ValidationError as err:
        raise FhirProblem(structure_issues(err, "Bundle")) from err
    except (ValueError, TypeError, KeyError) as err:
        raise FhirProblem([issue("structure", f"Not a valid Bundle: {err}", "Bundle")]) from err
    if checked.get("type") not in BUNDLE_TYPES:
        raise FhirProblem([issue("not-supported", f"A {checked.get('type')} Bundle is not taken: POST a transaction "
                                 "Bundle holding the ServiceRequest (and its Patient and Consent).", "Bundle.type")])
    entries = checked.get("entry") or []
    requests = [n for n, e in enumerate(entries) if (e.get("resource") or {}).get("resourceType") == "ServiceRequest"]
    if len(requests) != 1:
        raise FhirProblem([issue("invalid", f"The Bundle must hold one ServiceRequest, not {len(requests)}.",
                                 "Bundle.entry")])
    by_address: dict[str, dict[str, Any]] = {}
    for entry in entries:
        resource = entry.get("resource") or {}
        if entry.get("fullUrl"):
            by_address[entry["fullUrl"]] = resource
        if resource.get("id"):
            by_address[f"{resource['resourceType']}/{resource['id']}"] = resource
    sr = copy.deepcopy(entries[requests[0]]["resource"])
    inside: list[dict[str, Any]] = list(sr.get("contained") or [])
    taken: dict[int, str] = {}  # id() of a Bundle resource -> its local id

    def local(reference: dict[str, Any] | None) -> None:
        """Point `reference` at a contained copy of the Bundle resource it names (contained with what it names)."""
        target = by_address.get((reference or {}).get("reference") or "")
        if target is None or target.get("resourceType") not in ("Patient", "Practitioner", "PractitionerRole",
                                                                 "Organization", "Consent"):
            return
        if id(target) not in taken:
            copied = copy.deepcopy(target)
            copied.pop("contained", None)
            copied["id"] = f"b{len(taken) + 1}"
            taken[id(target)] = copied["id"]
            inside.append(copied)
            for name in FOLLOWED.get(copied["resourceType"], ()):
                local(copied.get(name))
        reference["reference"] = f"#{taken[id(target)]}"

    for name in FOLLOWED["ServiceRequest"]:
        local(sr.get(name))
    for entry in entries:
        if (entry.get("resource") or {}).get("resourceType") == "Consent":
            local({"reference": entry.get("fullUrl") or f"Consent/{entry['resource'].get('id')}"})
    if inside:
        sr["contained"] = inside
    return sr, requests[0]


def transaction_response(bundle: dict[str, Any], stored: dict[str, Any], id: str) -> dict[str, Any]:
    """The answer to a transaction Bundle: for each entry in order, what became of it (the ServiceRequest created;
    the others kept in it, not as resources of their own)."""
    answers = []
    for entry in bundle.get("entry") or []:
        kind = (entry.get("resource") or {}).get("resourceType")
        if kind == "ServiceRequest":
            answers.append({"resource": stored, "response": {"status": "201 Created",
                                                             "location": f"ServiceRequest/{id}"}})
        else:
            answers.append({"response": {"status": "200 OK", "outcome": {"resourceType": "OperationOutcome", "issue": [
                {"severity": "information", "code": "informational", "expression": ["Bundle.entry"],
                 "diagnostics": f"The {kind} is kept with ServiceRequest/{id}, as a contained resource."}]}}})
    return {"resourceType": "Bundle", "id": id, "type": "transaction-response", "entry": answers}


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


def codings_of(sr: dict[str, Any]) -> list[dict[str, Any]]:
    """The codings of `code`, then of each `category`."""
    concepts = [sr.get("code") or {}, *(sr.get("category") or [])]
    return [coding for concept in concepts for coding in concept.get("coding") or []]


def kind_of_help(sr: dict[str, Any], extra_codes: dict[str, str] | None = None) -> tuple[str, str | None]:
    """The kind of help and, for kind "other", the words the referrer used (never a refusal).

    A coding in our code system, else a coding REFERRAL_CODES (with the community's `extra_codes`, which win) maps,
    else "other" with the code's text, or its codings' displays or codes: a coordinator triages it."""
    codes = {**REFERRAL_CODES, **(extra_codes or {})}
    codings = codings_of(sr)
    for coding in codings:
        if coding.get("system") == CODE_SYSTEM and coding.get("code") in KINDS:
            return coding["code"], None
    for coding in codings:
        kind = codes.get(f"{coding.get('system')}|{coding.get('code')}")
        if kind in KINDS:
            return kind, None
    concept = sr.get("code") or {}
    words = concept.get("text") or ", ".join(
        c.get("display") or f"{c.get('system') or 'code'} {c.get('code')}" for c in concept.get("coding") or [])
    if not words:
        words = ", ".join(c.get("text") or ", ".join(x.get("display") or str(x.get("code")) for x in c.get("coding")
                                                     or []) for c in sr.get("category") or [])
    return "other", words or "No kind of help was given"


def window_from(sr: dict[str, Any], now: datetime, zone: tzinfo = UTC
                ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The time window and repeat, from occurrencePeriod, occurrenceDateTime or occurrenceTiming; without one, "as
    soon as convenient": from now for SOON_AS_CONVENIENT. A date without a time is that whole day (the community's)."""
    if period := sr.get("occurrencePeriod"):
        start = moment_of(period["start"], zone) if period.get("start") else None
        end = moment_of(period["end"], zone, end=True) if period.get("end") else None
        start = start or now
        return {"start": start.isoformat(), "end": (end or start + POINT_WINDOW).isoformat()}, None
    if moment := sr.get("occurrenceDateTime"):
        if re.fullmatch(r"\d{4}(-\d{2})?", moment):
            return soon(now), None
        start = moment_of(moment, zone)
        end = start + (timedelta(days=1) if len(moment) == 10 else POINT_WINDOW)
        return {"start": start.isoformat(), "end": end.isoformat()}, None
    if timing := sr.get("occurrenceTiming"):
        rule = timing.get("repeat") or {}
        when: dict[str, Any] = {}
        if rule.get("dayOfWeek"):
            when["days"] = rule["dayOfWeek"]
        parts = [PARTS_OF_DAY[code.split(".")[0]] for code in rule.get("when") or []
                 if code.split(".")[0] in PARTS_OF_DAY]
        if parts:
            when["part_of_day"] = parts[0]
        if when:
            when.setdefault("days", ["mon", "tue", "wed", "thu", "fri"])
            when.setdefault("part_of_day", "afternoon")
        repeat = None
        if rule.get("periodUnit") == "wk" and rule.get("count") and rule.get("frequency", 1) == 1:
            period = rule.get("period", 1)
            repeat = {"every_weeks": int(period) if float(period).is_integer() else period,
                      "occurrences": rule["count"]}
        return when or soon(now), repeat
    return soon(now), None


def moment_of(text: str, zone: tzinfo, end: bool = False) -> datetime:
    """A FHIR dateTime as an aware datetime: a date alone is the start of that day (of the next, for an `end`), a
    time without a zone is the community's."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = datetime.combine(date.fromisoformat(text), time.min, tzinfo=zone)
        return day + timedelta(days=1) if end else day
    if re.fullmatch(r"\d{4}(-\d{2})?", text):  # a year, or a month: its first day
        return datetime.combine(date.fromisoformat(f"{text}-01-01"[:10]), time.min, tzinfo=zone)
    found = datetime.fromisoformat(text)
    return found if found.tzinfo else found.replace(tzinfo=zone)


def plausible(when: dict[str, Any], now: datetime) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A one-off window the domain takes (from now, at most LONGEST_WINDOW long and AHEAD ahead): one already past
    or too far ahead becomes as soon as convenient, one started is from now, a longer one is cut; each change with
    a flag for the coordinator."""
    if "start" not in when:
        return when, None
    start, end = datetime.fromisoformat(when["start"]), datetime.fromisoformat(when["end"])
    asked = f"{when['start']} to {when['end']}"
    start, end = max(start, now), min(end, now + AHEAD)
    if end <= start:
        return soon(now), flag("when", f"The time asked for ({asked}) has passed, is more than a year ahead, or is "
                                       "not a time span: agree a time with the person.", asked)
    if end - start > LONGEST_WINDOW:
        return {"start": start.isoformat(), "end": (start + LONGEST_WINDOW).isoformat()}, flag(
            "when", f"The time asked for ({asked}) is longer than a month: ask for the first month, and agree "
                    "regular help as a recurring request.", asked)
    return {"start": start.isoformat(), "end": end.isoformat()}, None


def soon(now: datetime) -> dict[str, str]:
    """The window of a referral that says no time: as soon as convenient."""
    return {"start": now.isoformat(), "end": (now + SOON_AS_CONVENIENT).isoformat()}


def consent_from(sr: dict[str, Any], patient_id: str | None) -> tuple[dict[str, bool], list[dict[str, Any]]]:
    """The person's consents: our extensions, else an active Consent (contained, or from the Bundle) about the
    patient: its provision `permit` agrees to both (contact shared with the volunteer who accepts, and texts),
    `deny` to neither. What is not settled is a flag for the coordinator to confirm."""
    consent: dict[str, bool] = {}
    for kind_of_consent, url in CONSENTS.items():
        if (found := extension(sr.get("extension"), url)) and isinstance(found[1].get("valueBoolean"), bool):
            consent[kind_of_consent] = found[1]["valueBoolean"]
    flags = []
    for item in sr.get("contained") or []:
        if item.get("resourceType") != "Consent" or len(consent) == len(CONSENTS):
            continue
        about = (item.get("patient") or {}).get("reference")
        if about and patient_id and about != f"#{patient_id}":
            continue
        decision = (item.get("provision") or {}).get("type")
        if item.get("status") != "active" or decision not in ("permit", "deny"):
            flags.append(flag("consent", f"A Consent was sent ({item.get('status')}, "
                              f"{decision or 'no provision'}); confirm the person's consent with them or the "
                              "referrer before they are contacted.", None))
            continue
        for kind_of_consent in CONSENTS:
            consent.setdefault(kind_of_consent, decision == "permit")
    if len(consent) < len(CONSENTS) and not flags:
        flags.append(flag("consent", "No consent came with the referral: confirm with the person (or the "
                          "referrer) before anyone contacts them; until then their details go to no volunteer.",
                          None))
    return consent, flags


def flag(field: str, why: str, value: Any) -> dict[str, Any]:
    """Something a coordinator should check: the field, why, and what was sent."""
    return {"field": field, "why": why, "value": value}


def to_referral(resource: dict[str, Any], *, now: datetime | None = None, zone: tzinfo = UTC,
                extra_codes: dict[str, str] | None = None) -> dict[str, Any]:
    """A ServiceRequest as a referral that FhirReferralIn loads, with `to_check`: what a coordinator should check.
    Raises FhirProblem only for what is not a valid R4 ServiceRequest, or not a request to act on at all."""
    sr = validated(resource)
    now = now or datetime.now(UTC)
    problems, to_check = [], []
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
    if patient is None and (subject.get("reference") or "").startswith("#"):
        problems.append(issue("invalid", f"The subject refers to {subject['reference']!r}, which is not contained "
                              "in the ServiceRequest.", "ServiceRequest.subject"))
    elif patient is not None and patient[1]["resourceType"] != "Patient":
        problems.append(issue("invalid", f"The subject must be a Patient, not a {patient[1]['resourceType']}.",
                              "ServiceRequest.subject"))
    elif patient is not None and (patient[1].get("deceasedBoolean") or patient[1].get("deceasedDateTime")):
        problems.append(issue("business-rule", "The patient is recorded as deceased: refer the person who needs "
                              "support.", f"ServiceRequest.contained[{patient[0]}].deceased"))
    if problems:
        raise FhirProblem(problems)

    if patient is None:
        where = subject.get("reference") or (subject.get("identifier") or {}).get("value") or "not given"
        to_check.append(flag("person", f"The patient's details were not sent (subject {where}): ask the referrer "
                             "for their address and phone.", where))
        person, unplaced_language = ({"name": subject["display"]} if subject.get("display") else {}), None
    else:
        person, unplaced_language = person_from(patient[1], subject.get("display"))
    kind, words = kind_of_help(sr, extra_codes)
    if words is not None:
        to_check.append(flag("support_type", f"Asked for: {words}. No kind of help matches it: choose one, or help "
                             "another way.", words))
    when, repeat = window_from(sr, now, zone)
    when, window_flag = plausible(when, now)
    if window_flag:
        to_check.append(window_flag)
    consent, consent_flags = consent_from(sr, patient[1].get("id") if patient else None)
    to_check.extend(consent_flags)
    reasons = [c.get("text") or ", ".join(x["display"] for x in c.get("coding") or [] if x.get("display"))
               for c in sr.get("reasonCode") or []]
    reasons += [note.get("text") for note in sr.get("note") or []]
    if words is not None:
        reasons.insert(0, f"Asked for: {words}")
    reasons = [r.strip() for r in reasons if r and r.strip()]
    if reasons and unplaced_language:
        reasons.append(f"Preferred language: {unplaced_language}.")
    referral: dict[str, Any] = {
        "person": person,
        "support_type": kind,
        "urgency": PRIORITIES.get(sr.get("priority", "routine"), "routine"),
        "consent": consent,
        "referrer": referrer_from(sr),
        "when": when,
        "to_check": to_check,
    }
    if repeat is not None:
        referral["repeat"] = repeat
    if reasons:
        referral["reason"] = "\n\n".join(reasons)
    identifiers = [i["value"] for i in ranked(sr.get("identifier") or [], ("official", "usual", None, "secondary"))
                   if i.get("value")]
    if identifiers:
        referral["external_id"] = identifiers[0][:64]
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


# What a closed referral's ServiceRequest says once the document it came in is no longer kept (retention: the document
# holds the whole patient, and is kept only while the request is open).
NOT_KEPT = {"resourceType": "ServiceRequest", "intent": "order",
            "subject": {"display": "Not kept: the document sent is dropped when the request closes"}}


def service_request_of(document: dict[str, Any] | None) -> dict[str, Any]:
    """The ServiceRequest a stored document (a ServiceRequest, or the transaction Bundle it came in) holds, with
    what the Bundle gave it contained; once the request closed and the document went, only what says so."""
    if document is None:
        return NOT_KEPT
    return from_bundle(document)[0] if document.get("resourceType") == "Bundle" else document


# --- outcomes back: a Task per referral ------------------------------------------------------------------------

# A referral's status -> its Task's (FHIR R4 Task.status). While still "submitted", one a coordinator must triage
# first is `received` (claimed, being looked at), else `accepted`; a closed one is `rejected` if nobody had been
# looked for yet, `failed` if nobody could be found, otherwise `cancelled`.
TASK_STATUSES = {"submitted": "accepted", "offered": "in-progress", "unmatched": "in-progress",
                 "matched": "in-progress", "completed": "completed", "cancelled": "cancelled",
                 "signposted": "cancelled"}
CLOSED = ("cancelled", "signposted")  # closed without the help given: signposted says where the person was pointed


def task_status(status: str, held: bool, earlier: list[str]) -> str:
    """The Task's status for a referral's status (`earlier`: the statuses it had before, in order)."""
    if status == "submitted" and held:
        return "received"
    if status in CLOSED:
        looked = [s for s in earlier if s in ("offered", "unmatched", "matched")]
        if not looked:
            return "rejected"
        if looked[-1] == "unmatched":
            return "failed"
    return TASK_STATUSES[status]


def task(request: Any) -> dict[str, Any]:
    """The R4 Task that says how a referral (a SupportRequest) is getting on, in its referrer's words: its stage as
    the businessStatus, a closed one's reason as the statusReason; nothing of the volunteers."""
    from services.intake.domain import REFERRAL_HISTORY

    stage, meaning = request.referral_stage()
    earlier = [REFERRAL_HISTORY[e.what] for e in request.timeline if e.what in REFERRAL_HISTORY]
    status = task_status(request.status, request.held, earlier[:-1] if earlier[-1:] in (["cancelled"], ["signposted"])
                         else earlier)
    if request.source == "health_system":
        focus = {"reference": f"ServiceRequest/{request.id}", "type": "ServiceRequest"}
    else:
        focus = {"type": "ServiceRequest", "identifier": {"system": REFERRAL_ID, "value": str(request.id)},
                 "display": "A referral made through the API or the referral form"}
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": str(request.id),
        "meta": {"lastUpdated": request.updated_at.isoformat()},
        "identifier": [{"system": f"{BASE}/Task", "value": str(request.id)}],
        "basedOn": [focus],
        "status": status,
        "businessStatus": {"coding": [{"system": REFERRAL_STAGE, "code": request.status, "display": stage}],
                           "text": stage},
        "intent": "order",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill",
                             "display": "Fulfill the focal request"}]},
        "focus": focus,
        "authoredOn": request.created_at.isoformat(),
        "lastModified": request.updated_at.isoformat(),
        "executionPeriod": {"start": request.created_at.isoformat()},
    }
    if request.external_id:
        resource["groupIdentifier"] = {"value": request.external_id}
    if request.referrer_organisation:
        resource["requester"] = {"display": request.referrer_organisation}
    if request.status in ("completed", *CLOSED):
        resource["executionPeriod"]["end"] = request.updated_at.isoformat()
    if request.status in CLOSED and meaning:
        resource["statusReason"] = {"text": meaning}
    elif meaning:
        resource["note"] = [{"text": meaning}]
    return resource


def searchset(resources: list[dict[str, Any]], base: str) -> dict[str, Any]:
    """A searchset Bundle of these resources (`base`: the server's address, for each entry's fullUrl)."""
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


def capability_statement(base: str, software_version: str = "1") -> dict[str, Any]:
    """What this server does with FHIR R4: referrals in, Tasks out."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-07",
        "publisher": "Compassionate Communities",
        "kind": "instance",
        "software": {"name": "Compassionate Communities intake", "version": software_version},
        "implementation": {"description": "Referrals for volunteer support (practical help, companionship, carer "
                                          "respite, bereavement support) from health and care systems",
                           "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "A ServiceRequest is taken as a referral, alone or in a transaction Bundle with its "
                             "Patient and Consent. SNOMED CT referral codes map to kinds of help; an unknown code, "
                             "a code with only text, a phone number or postcode that cannot be used, and a "
                             "missing consent are kept and flagged for a coordinator, not refused. Each referral's "
                             "progress is a Task whose focus is the ServiceRequest.",
            "security": {"description": "Every interaction but this one needs a bearer token (Authorization: Bearer "
                                        "...) with the role referrer, coordinator or admin; a referrer reads only "
                                        "their organisation's referrals."},
            "resource": [
                {"type": "ServiceRequest", "interaction": [{"code": "create"}, {"code": "read"}],
                 "documentation": "Idempotency-Key is honoured on create."},
                {"type": "Task", "interaction": [{"code": "read"}, {"code": "search-type"}],
                 "searchParam": [{"name": "focus", "type": "reference",
                                  "documentation": "ServiceRequest/<id>: the Task of that referral"}]},
            ],
            "interaction": [{"code": "transaction"}],
        }],
    }
