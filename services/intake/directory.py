"""The signposting directory: services and groups in the community a coordinator can point someone to when no
volunteer can help (a befriending scheme, a bereavement group, a community transport service), what each offers in
the kinds of help of shared/taxonomy.py, where, when, how to contact it and who may use it.

Entries come from Open Referral UK / HSDS JSON (a service list as an ORUK API publishes it: a page with its
`content`, HSDS 3's `contents`, or a plain list) or from a CSV sheet (TEMPLATE_COLUMNS), each problem named by its
place in the file. Pure: no Flask, no database session, no environment.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from shared import gazetteer
from shared.clock import utcnow
from shared.taxonomy import KINDS

# A CSV sheet's columns, as the template has them (`kinds`: the project's kinds of help, separated by ";").
TEMPLATE_COLUMNS = ("id", "name", "kinds", "description", "organisation", "postcode", "latitude", "longitude",
                    "when", "phone", "email", "website", "eligibility")
TEMPLATE_EXAMPLE = {"id": "befriending-fy1", "name": "Fylde Befriending Circle",
                    "kinds": "home_visit; phone_check_in", "description": "Weekly visits and calls for people on "
                    "their own", "organisation": "Fylde Age Concern", "postcode": "FY1 4AB", "latitude": "",
                    "longitude": "", "when": "Weekdays 10:00-16:00", "phone": "01253 000000",
                    "email": "hello@example.org", "website": "https://example.org/befriending",
                    "eligibility": "Adults over 60 living in Blackpool"}
LIMITS = {"name": 200, "description": 2000, "organisation": 200, "when": 500, "phone": 40, "email": 200,
          "website": 500, "eligibility": 1000, "id": 100}
# Words in an ORUK service's taxonomy terms (or, failing those, its name) and the kinds of help they mean.
KIND_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"befriend|companion|lonel|isolat|social contact", ("home_visit", "phone_check_in")),
    (r"telephone|phone call|call service|check.?in", ("phone_check_in",)),
    (r"bereave|grief|loss", ("bereavement_visit", "bereavement_group")),
    (r"carer|respite|sitting service", ("carer_respite",)),
    (r"transport|lifts?\b|driving|dial.a.ride", ("transport",)),
    (r"shopping", ("shopping",)),
    (r"prescription|pharmac", ("prescription_collection",)),
    (r"meal|food|lunch club|cook", ("meals",)),
    (r"household|handy ?(person|man)|garden|cleaning|odd jobs", ("household_tasks",)),
    (r"advance care|future (life )?planning|end of life planning|death cafe|dying matters", (
        "planning_conversation", "planning_session")),
)


class DirectoryProblem(ValueError):
    """A file that cannot be read at all (not JSON, not CSV, no services in it)."""


@dataclass(eq=False)
class DirectoryEntry:
    """A service or group in a community's directory. `organisation_id` links it to the register of organisations
    when the organisation is there; `external_id` is its id in the file it was imported from (a re-import updates
    it). A retired entry stays (a request signposted to it still names it) but is offered no more."""

    community: str
    name: str
    kinds: list[str]
    description: str = ""
    organisation: str = ""
    organisation_id: uuid.UUID | None = None
    postcode: str | None = None
    area: str = ""
    latitude: float | None = None
    longitude: float | None = None
    when: str = ""
    phone: str = ""
    email: str = ""
    website: str = ""
    eligibility: str = ""
    external_id: str | None = None
    retired: bool = False
    id: uuid.UUID | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self):
        self.id = self.id or uuid.uuid4()
        self.created_at = self.created_at or utcnow()
        self.updated_at = self.updated_at or self.created_at

    def change(self, details: dict[str, Any]) -> None:
        """New details (those given)."""
        for name, value in details.items():
            setattr(self, name, value)
        self.updated_at = utcnow()

    @property
    def contact(self) -> str:
        """How to reach it, in one line."""
        return " · ".join(part for part in (self.phone, self.email, self.website) if part)

    def distance_from(self, latitude: float, longitude: float) -> float | None:
        """Kilometres from a place to this entry (None for one with no place: a helpline, an online group)."""
        if self.latitude is None or self.longitude is None:
            return None
        return gazetteer.distance_km(latitude, longitude, self.latitude, self.longitude)


def nearest(entries: Iterable[DirectoryEntry], kind: str | None = None, latitude: float | None = None,
            longitude: float | None = None,
            within_km: float | None = None) -> list[tuple[DirectoryEntry, float | None]]:
    """The active entries offering `kind` (any, when None), each with its distance from the place when one is given:
    nearest first, those with no place (helplines) after them, then by name; beyond `within_km` left out."""
    found = []
    for entry in entries:
        if entry.retired or (kind and kind not in entry.kinds):
            continue
        away = entry.distance_from(latitude, longitude) if latitude is not None and longitude is not None else None
        if within_km is not None and away is not None and away > within_km:
            continue
        found.append((entry, away))
    return sorted(found, key=lambda pair: (pair[1] is None, pair[1] or 0.0, pair[0].name.lower()))


# --- reading files ------------------------------------------------------------------------------------------------


def kinds_in(*texts: str) -> list[str]:
    """The kinds of help the words of the first text that names any mean (in the taxonomy's order)."""
    for text in texts:
        found = {kind for pattern, kinds in KIND_WORDS if re.search(pattern, text or "", re.IGNORECASE)
                 for kind in kinds}
        if found:
            return [kind for kind in KINDS if kind in found]
    return []


def checked(details: dict[str, Any], where: str) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """An entry's details made whole (its place from the postcode, or its coordinates), or the problems with them,
    each as {"where", "field", "detail"}."""
    problems: list[dict[str, str]] = []

    def problem(field: str, detail: str) -> None:
        problems.append({"where": where, "field": field, "detail": detail})

    out = {name: (value.strip() if isinstance(value, str) else value) for name, value in details.items()}
    if not out.get("name"):
        problem("name", "Give the service's name.")
    for name, limit in LIMITS.items():
        if isinstance(out.get(name), str) and len(out[name]) > limit:
            problem(name, f"At most {limit} characters.")
    kinds = out.get("kinds") or []
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        problem("kinds", f"Not a kind of help: {', '.join(unknown)}. The kinds are: {', '.join(KINDS)}.")
    elif not kinds:
        problem("kinds", "Say what it offers: one or more kinds of help.")
    for name, bound in (("latitude", 90), ("longitude", 180)):
        value = out.get(name)
        if value in ("", None):
            out[name] = None
            continue
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            problem(name, "Give a number.")
            continue
        if not -bound <= out[name] <= bound:
            problem(name, f"Must be between -{bound} and {bound}.")
    out["area"] = ""
    if out.get("postcode"):
        try:
            place = gazetteer.locate(out["postcode"])
        except gazetteer.UnknownPostcode as err:
            if out["latitude"] is None:  # kept as given when the file gives where it is
                problem("postcode", str(err))
        else:
            out["area"] = place.district
            if out["latitude"] is None and out["longitude"] is None:
                out["latitude"], out["longitude"] = place.latitude, place.longitude
    if (out.get("latitude") is None) != (out.get("longitude") is None):
        problem("latitude" if out.get("latitude") is None else "longitude", "Give both latitude and longitude.")
    out.setdefault("postcode", None)
    out["postcode"] = out["postcode"] or None
    return (None if problems else out), problems


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _first(items: Any) -> dict[str, Any]:
    return next((i for i in items if isinstance(i, dict)), {}) if isinstance(items, list) else {}


def _phone_of(thing: dict[str, Any]) -> str:
    return _text(_first(thing.get("phones")).get("number"))


def from_oruk(service: dict[str, Any]) -> dict[str, Any]:
    """An entry's details from one ORUK (v1) or HSDS 3 service: its first location, phone, email and schedule;
    the kinds of help its taxonomy terms (or else its name) name."""
    organisation = service.get("organization") if isinstance(service.get("organization"), dict) else {}
    location = _first(service.get("service_at_locations")).get("location") or _first(service.get("locations"))
    location = location if isinstance(location, dict) else {}
    address = (_first(location.get("physical_addresses")) or _first(location.get("addresses"))
               or _first(location.get("address")))
    contact = _first(service.get("contacts"))
    terms = [t.get("taxonomy") or t.get("taxonomy_term") or t for t in
             (service.get("service_taxonomys") or service.get("attributes") or []) if isinstance(t, dict)]
    term_names = " ; ".join(_text(t.get("name")) + " " + _text(t.get("term")) for t in terms if isinstance(t, dict))
    schedules = [s for s in (service.get("regular_schedules") or service.get("schedules") or []) if isinstance(s, dict)]
    eligibility = _text(service.get("eligibility_description")) or "; ".join(
        _text(e.get("eligibility")) for e in service.get("eligibilitys") or [] if isinstance(e, dict)
        and _text(e.get("eligibility")))
    kinds = [k for k in service.get("kinds") or [] if isinstance(k, str)] or kinds_in(term_names, _text(
        service.get("name")))
    return {
        "external_id": _text(str(service.get("id") or "")) or None, "name": _text(service.get("name")),
        "kinds": kinds, "description": _text(service.get("description")),
        "organisation": _text(organisation.get("name")),
        "postcode": _text(address.get("postal_code")) or None,
        "latitude": location.get("latitude"), "longitude": location.get("longitude"),
        "when": "; ".join(filter(None, (schedule_text(s) for s in schedules))),
        "phone": _phone_of(service) or _phone_of(contact) or _phone_of(location),
        "email": _text(service.get("email")) or _text(contact.get("email")) or _text(organisation.get("email")),
        "website": _text(service.get("url")) or _text(organisation.get("url")),
        "eligibility": eligibility,
        "retired": _text(service.get("status")).lower() in ("inactive", "defunct"),
    }


DAY_NAMES = {"MO": "Mon", "TU": "Tue", "WE": "Wed", "TH": "Thu", "FR": "Fri", "SA": "Sat", "SU": "Sun"}


def schedule_text(schedule: dict[str, Any]) -> str:
    """An ORUK regular schedule in words: its description, else its days and hours ("Mon, Wed 10:00-12:00")."""
    if _text(schedule.get("description")):
        return _text(schedule["description"])
    days = ", ".join(DAY_NAMES.get(d.strip().upper(), d.strip()) for d in _text(schedule.get("byday")).split(",")
                     if d.strip())
    hours = "-".join(_text(schedule.get(k))[:5] for k in ("opens_at", "closes_at") if _text(schedule.get(k)))
    return " ".join(filter(None, (days, hours)))


def services_in(document: Any) -> list[Any]:
    """The services of an ORUK / HSDS document: a page of them (`content`, or HSDS 3's `contents`), a plain list,
    or a single service."""
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        for key in ("content", "contents", "items", "services"):
            if isinstance(document.get(key), list):
                return document[key]
        if "name" in document:
            return [document]
    raise DirectoryProblem("The JSON holds no services: expected a list of Open Referral services, or a page of "
                           "them with `content`.")


@dataclass(frozen=True)
class Sheet:
    """A file as read: each good entry's details, each problem ({"where", "field", "detail"}), and the services
    left out because they offer none of the kinds of help (ORUK feeds list every service in an area)."""

    entries: list[dict[str, Any]]
    problems: list[dict[str, str]]
    skipped: list[str]
    rows: int


def read_oruk(raw: bytes) -> Sheet:
    """An Open Referral UK / HSDS JSON file's services; DirectoryProblem if it is not JSON or holds none."""
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as err:
        raise DirectoryProblem(f"The file is not JSON: {err}.") from err
    services = services_in(document)
    entries, problems, skipped = [], [], []
    for n, service in enumerate(services):
        where = f"services[{n}]"
        if not isinstance(service, dict):
            problems.append({"where": where, "field": "", "detail": "Not a service (a JSON object)."})
            continue
        details = from_oruk(service)
        if not details["kinds"] and details["name"]:
            skipped.append(details["name"])
            continue
        good, found = checked(details, where)
        problems += found
        if good is not None:
            entries.append(good)
    return Sheet(entries, problems, skipped, len(services))


def read_csv(raw: bytes) -> Sheet:
    """A CSV sheet with TEMPLATE_COLUMNS (the header is line 1); DirectoryProblem if it cannot be read."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        rows = [(reader.line_num, row) for row in reader
                if any((v or "").strip() for v in row.values() if isinstance(v, str))]
    except csv.Error as err:
        raise DirectoryProblem(f"The file is not CSV: line {reader.line_num}: {err}.") from err
    if not reader.fieldnames:
        raise DirectoryProblem("The file is empty.")
    unknown = [name for name in reader.fieldnames if name and name.strip().lower() not in TEMPLATE_COLUMNS]
    if unknown or "name" not in [n.strip().lower() for n in reader.fieldnames if n]:
        raise DirectoryProblem(f"Unknown column(s): {', '.join(unknown) or 'none'}; the columns are "
                               f"{', '.join(TEMPLATE_COLUMNS)} (name is required).")
    entries, problems = [], []
    for line, row in rows:
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
        details = {name: row.get(name, "") for name in TEMPLATE_COLUMNS if name not in ("id", "kinds")}
        details["external_id"] = row.get("id") or None
        details["kinds"] = [k.strip().lower() for k in re.split(r"[;,]", row.get("kinds", "")) if k.strip()]
        good, found = checked(details, f"line {line}")
        problems += found
        if good is not None:
            entries.append(good)
    return Sheet(entries, problems, [], len(rows))


def read_file(raw: bytes, filename: str = "") -> Sheet:
    """A directory file: JSON (ORUK / HSDS) when it is named .json or starts like JSON, else CSV."""
    if filename.lower().endswith(".json") or raw.lstrip(b"\xef\xbb\xbf \r\n\t")[:1] in (b"{", b"["):
        return read_oruk(raw)
    return read_csv(raw)


def template_csv() -> str:
    """The CSV template: the header and one example row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=TEMPLATE_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerow(TEMPLATE_EXAMPLE)
    return out.getvalue()
