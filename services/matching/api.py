"""Matching's HTTP API: volunteers (with checks, availability and time away), and how a request is matched."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import sqlalchemy as sa
from flask import g, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.matching import handlers
from services.matching.model import VOLUNTEER_STATUSES, MatchRequest, Offer, TimeAway, Volunteer, VolunteerCheck
from services.matching.rules import Policy, explain, rule_text
from shared import clock, gazetteer
from shared.contracts import DAYS, PARTS_OF_DAY
from shared.clock import utcnow
from shared.taxonomy import CHECKS, SKILLS
from shared.web import PhoneNumber, create_service_app, field_errors, problem, requires, service

BEARER = [{"bearerAuth": []}]
COORDINATORS = ("coordinator", "admin")
blp = Blueprint("volunteers", __name__, url_prefix="/volunteers", description="Trained volunteers")
matches = Blueprint("matches", __name__, url_prefix="/matches",
                    description="How each request is matched: candidates, reasons, and a coordinator's choices")


class CheckIn(Schema):
    """That a check or training was done, and when it expires."""

    check = fields.Str(required=True, validate=validate.OneOf(sorted(CHECKS)))
    done_on = fields.Date(required=True)
    expires_on = fields.Date(load_default=None, allow_none=True)

    @validates_schema
    def check_dates(self, data, **kwargs):
        if data.get("expires_on") and data["expires_on"] <= data["done_on"]:
            raise ValidationError({"expires_on": ["Must be after done_on."]})


class WindowIn(Schema):
    """A weekly window: these days, this part of the day."""

    days = fields.List(fields.Str(validate=validate.OneOf(DAYS)), required=True, validate=validate.Length(min=1))
    part_of_day = fields.Str(required=True, validate=validate.OneOf(PARTS_OF_DAY))


class AwayIn(Schema):
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(required=True)

    @validates_schema
    def check_dates(self, data, **kwargs):
        if data["ends_on"] < data["starts_on"]:
            raise ValidationError({"ends_on": ["Must not be before starts_on."]})


def known_postcode(value: str) -> None:
    try:
        gazetteer.locate(value)
    except gazetteer.UnknownPostcode as err:
        raise ValidationError(str(err)) from err


class VolunteerIn(Schema):
    """A volunteer as a coordinator registers them; give a postcode, or both latitude and longitude."""

    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    phone = PhoneNumber(required=True)
    postcode = fields.Str(validate=[validate.Length(max=10), known_postcode])
    latitude = fields.Float(validate=validate.Range(-90, 90))
    longitude = fields.Float(validate=validate.Range(-180, 180))
    max_distance_km = fields.Float(required=True, validate=validate.Range(min=0, max=200, min_inclusive=False))
    skills = fields.List(fields.Str(validate=validate.OneOf(SKILLS)), required=True, validate=validate.Length(min=1))
    languages = fields.List(fields.Str(validate=validate.Regexp(r"^[a-z]{2}$")), load_default=lambda: ["en"],
                            validate=validate.Length(min=1))
    gender = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(["female", "male", "non-binary"]))
    availability = fields.List(fields.Nested(WindowIn), load_default=list,
                               metadata={"description": "Weekly windows; none means any time."})
    weekly_cap = fields.Int(load_default=3, validate=validate.Range(min=1, max=21))
    checks = fields.List(fields.Nested(CheckIn), load_default=list)
    time_away = fields.List(fields.Nested(AwayIn), load_default=list)

    @validates_schema
    def check_place(self, data, partial=False, **kwargs):
        if partial and not {"postcode", "latitude", "longitude"} & set(data):
            return
        if "postcode" not in data and ("latitude" not in data or "longitude" not in data):
            raise ValidationError({name: ["Give a postcode, or both latitude and longitude."]
                                   for name in ("postcode", "latitude", "longitude") if name not in data})


class VolunteerPatch(VolunteerIn):
    """What may change; only the fields given change. `status` pauses, resumes or records that they left."""

    status = fields.Str(validate=validate.OneOf(VOLUNTEER_STATUSES))


class CheckOut(CheckIn):
    expires_soon = fields.Bool()


class TaskOut(Schema):
    offer_id = fields.UUID(attribute="id")
    request_id = fields.UUID()
    code = fields.Str()
    status = fields.Str()
    created_at = fields.AwareDateTime()
    answered_at = fields.AwareDateTime(allow_none=True)
    hours = fields.Float(allow_none=True)


class VolunteerOut(Schema):
    id = fields.UUID()
    community = fields.Str()
    name = fields.Str()
    phone = fields.Str()
    postcode = fields.Str(allow_none=True)
    area = fields.Str()
    latitude = fields.Float()
    longitude = fields.Float()
    max_distance_km = fields.Float()
    skills = fields.List(fields.Str())
    languages = fields.List(fields.Str())
    gender = fields.Str(allow_none=True)
    availability = fields.Method("_availability")
    weekly_cap = fields.Int()
    status = fields.Str()
    active = fields.Method("_active")
    sms_opted_out_at = fields.AwareDateTime(allow_none=True)
    checks = fields.Method("_checks")
    time_away = fields.List(fields.Nested(AwayIn))
    created_at = fields.AwareDateTime()

    def _availability(self, v: Volunteer) -> list[dict]:
        by_part: dict[str, list[str]] = {}
        for slot in v.availability:
            day, part = slot.split(":")
            by_part.setdefault(part, []).append(day)
        return [{"days": sorted(days, key=DAYS.index), "part_of_day": part} for part, days in by_part.items()]

    def _active(self, v: Volunteer) -> bool:
        return v.status == "active"

    def _checks(self, v: Volunteer) -> list[dict]:
        soon = clock.today() + timedelta(days=30)
        return [{"check": c.check, "done_on": c.done_on.isoformat(),
                 "expires_on": c.expires_on.isoformat() if c.expires_on else None,
                 "expires_soon": bool(c.expires_on and c.expires_on <= soon)} for c in v.checks]


class VolunteerDetailOut(VolunteerOut):
    tasks = fields.Method("_tasks")

    def _tasks(self, v: Volunteer) -> list[dict]:
        with service().sessions() as session:
            offers = session.scalars(sa.select(Offer).where(Offer.volunteer_id == v.id)
                                     .order_by(Offer.created_at.desc()).limit(100)).all()
            return TaskOut(many=True).dump(offers)


class VolunteerQuery(Schema):
    status = fields.Str(validate=validate.OneOf(VOLUNTEER_STATUSES))
    expiring_within_days = fields.Int(validate=validate.Range(min=0, max=365),
                                      metadata={"description": "Only volunteers with a check expiring this soon."})


def apply(volunteer: Volunteer, data: dict) -> None:
    """Copy validated fields onto a volunteer: place through the gazetteer, windows flattened."""
    data = dict(data)
    if "postcode" in data:
        place = gazetteer.locate(data["postcode"])
        volunteer.area = place.district
        data.setdefault("latitude", place.latitude)
        data.setdefault("longitude", place.longitude)
    elif "latitude" in data:
        volunteer.postcode, volunteer.area = None, ""
    if "availability" in data:
        volunteer.availability = sorted({f"{day}:{w['part_of_day']}" for w in data.pop("availability")
                                         for day in w["days"]})
    if "checks" in data:
        given = {c["check"]: c for c in data.pop("checks")}
        kept = [c for c in volunteer.checks if c.check not in given]
        for existing in volunteer.checks:
            if existing.check in given:
                c = given.pop(existing.check)
                existing.done_on, existing.expires_on = c["done_on"], c["expires_on"]
                kept.append(existing)
        volunteer.checks = kept + [VolunteerCheck(**c) for c in given.values()]
    if "time_away" in data:
        volunteer.time_away = [TimeAway(**t) for t in data.pop("time_away")]
    for name, value in data.items():
        setattr(volunteer, name, value)


def find_volunteer(session, volunteer_id) -> Volunteer:
    volunteer = session.get(Volunteer, volunteer_id)
    if volunteer is None or volunteer.community not in g.user["communities"]:
        abort(404, message="No such volunteer.")
    return volunteer


def register(session, community: str, data: dict) -> Volunteer:
    """Add a volunteer to `community` from a loaded VolunteerIn, and tell metrics they joined."""
    volunteer = Volunteer(community=community, checks=[], time_away=[])
    apply(volunteer, data)
    session.add(volunteer)
    handlers.volunteer_joined(session, volunteer)
    return volunteer


@blp.route("")
class Volunteers(MethodView):
    @requires(*COORDINATORS)
    @blp.arguments(VolunteerIn)
    @blp.response(201, VolunteerOut)
    @blp.doc(security=BEARER)
    def post(self, data):
        """Register a trained volunteer."""
        with service().sessions.begin() as session:
            if session.scalar(sa.select(Volunteer.id).where(Volunteer.phone == data["phone"])):
                abort(409, message="A volunteer with this phone number is already registered.")
            volunteer = register(session, g.user["communities"][0], data)
        return volunteer

    @requires(*COORDINATORS)
    @blp.arguments(VolunteerQuery, location="query")
    @blp.response(200, VolunteerOut(many=True))
    @blp.paginate()
    @blp.doc(security=BEARER)
    def get(self, query, pagination_parameters):
        """The community's volunteers, by name (filter by status, or by a check expiring soon)."""
        where = [Volunteer.community.in_(g.user["communities"])]
        if "status" in query:
            where.append(Volunteer.status == query["status"])
        if "expiring_within_days" in query:
            until = clock.today() + timedelta(days=query["expiring_within_days"])
            where.append(Volunteer.id.in_(sa.select(VolunteerCheck.volunteer_id)
                                          .where(VolunteerCheck.expires_on <= until)))
        with service().sessions() as session:
            pagination_parameters.item_count = session.scalar(
                sa.select(sa.func.count()).select_from(Volunteer).where(*where))
            return session.scalars(sa.select(Volunteer).where(*where).order_by(Volunteer.name)
                                   .offset(pagination_parameters.first_item)
                                   .limit(pagination_parameters.page_size)).all()


@blp.route("/<uuid:volunteer_id>")
class VolunteerById(MethodView):
    @requires(*COORDINATORS)
    @blp.response(200, VolunteerDetailOut)
    @blp.doc(security=BEARER)
    def get(self, volunteer_id):
        """A volunteer, with their offers and tasks."""
        with service().sessions() as session:
            return find_volunteer(session, volunteer_id)

    @requires(*COORDINATORS)
    @blp.arguments(VolunteerPatch(partial=True))
    @blp.response(200, VolunteerOut)
    @blp.doc(security=BEARER)
    def patch(self, data, volunteer_id):
        """Change a volunteer: checks given replace those of the same kind; time away given replaces the list."""
        with service().sessions.begin() as session:
            volunteer = find_volunteer(session, volunteer_id)
            if "phone" in data and session.scalar(sa.select(Volunteer.id).where(
                    Volunteer.phone == data["phone"], Volunteer.id != volunteer.id)):
                abort(409, message="Another volunteer has this phone number.")
            if "status" in data:
                handlers.set_status(session, volunteer, data.pop("status"))
            apply(volunteer, data)
            return volunteer


# --- importing a coordinator's spreadsheet ---------------------------------------------------------------------

LIST_COLUMNS = ("skills", "languages")
CHECK_COLUMNS = {f"{check}_{edge}": (check, edge) for check in CHECKS for edge in ("done", "expires")}
COLUMNS = ("name", "phone", "postcode", "latitude", "longitude", "max_distance_km", "skills", "languages", "gender",
           "availability", "weekly_cap", *CHECK_COLUMNS)
_UK_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def _date(text: str) -> str:
    """A spreadsheet's date as ISO: 2026-01-05 stays; 05/01/2026 (day first, as UK and Canadian sheets write
    it) becomes 2026-01-05; anything else is left for the schema to refuse."""
    found = _UK_DATE.match(text)
    return f"{found[3]}-{int(found[2]):02d}-{int(found[1]):02d}" if found else text


def volunteer_from_row(row: dict[str, str]) -> dict:
    """A CSV row as the body POST /volunteers takes: lists split on ';' or ',', availability as 'mon:morning',
    each check as <check>_done and <check>_expires columns. Empty cells are left out."""
    cells = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k}
    data: dict = {}
    for name in ("name", "phone", "postcode", "gender", "latitude", "longitude", "max_distance_km", "weekly_cap"):
        if cells.get(name):
            data[name] = cells[name].lower() if name == "gender" else cells[name]
    for name in LIST_COLUMNS:
        if cells.get(name):
            data[name] = [item.strip().lower() for item in re.split(r"[;,]", cells[name]) if item.strip()]
    if cells.get("availability"):
        windows = [item.strip().lower().replace(" ", ":") for item in re.split(r"[;,]", cells["availability"])
                   if item.strip()]
        data["availability"] = [{"days": [w.split(":")[0]], "part_of_day": w.partition(":")[2]} for w in windows]
    checks = {}
    for column, (check, edge) in CHECK_COLUMNS.items():
        if cells.get(column):
            checks.setdefault(check, {"check": check})["done_on" if edge == "done" else "expires_on"] = \
                _date(cells[column])
    if checks:
        data["checks"] = list(checks.values())
    return data


def _column_of(field: str, data: dict) -> str:
    """The spreadsheet column a schema error is about: `checks.1.expires_on` -> `criminal_record_expires`."""
    parts = field.split(".")
    if parts[0] == "checks" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(data.get("checks", [])):
        check = data["checks"][int(parts[1])]["check"]
        return f"{check}_{'done' if parts[-1] == 'done_on' else 'expires'}" if len(parts) > 2 else f"{check}_done"
    return parts[0]


def read_csv(raw: bytes) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; line 1 is the header. Excel's byte-order mark and CRLF are fine,
    and a sheet saved in Windows-1252 is read as such."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    for row in reader:
        if any((value or "").strip() for value in row.values() if isinstance(value, str)):
            rows.append((reader.line_num, row))
    if reader.fieldnames is None:
        raise ValueError("The file is empty.")
    unknown = [name for name in reader.fieldnames if name and name.strip().lower() not in COLUMNS]
    if unknown:
        raise ValueError(f"Unknown column(s): {', '.join(unknown)}. The columns are: {', '.join(COLUMNS)}.")
    return rows


def import_volunteers(session, raw: bytes, community: str, skip_invalid: bool = False) -> dict:
    """Validate every row, then add the good volunteers in the caller's transaction: all of them, or none while
    any row is bad unless `skip_invalid`. Returns counts and each bad row's problems with its line number."""
    rows = read_csv(raw)
    valid, problems = [], []
    for line, row in rows:
        data = volunteer_from_row(row)
        try:
            valid.append((line, VolunteerIn().load(data)))
        except ValidationError as err:
            problems += [{"line": line, "field": _column_of(e["field"], data), "detail": e["detail"]}
                         for e in field_errors(err.messages)]
    known = set(session.scalars(sa.select(Volunteer.phone).where(
        Volunteer.phone.in_({loaded["phone"] for _, loaded in valid}))))
    seen: dict[str, int] = {}
    good = []
    for line, loaded in valid:
        phone = loaded["phone"]
        if phone in known:
            problems.append({"line": line, "field": "phone", "detail": "A volunteer with this phone is registered."})
        elif phone in seen:
            problems.append({"line": line, "field": "phone", "detail": f"The same phone as line {seen[phone]}."})
        else:
            seen[phone] = line
            good.append(loaded)
    problems.sort(key=lambda problem: problem["line"])
    if problems and not skip_invalid:
        return {"imported": 0, "rows": len(rows), "errors": problems}
    for data in good:
        register(session, community, data)
    return {"imported": len(good), "rows": len(rows), "errors": problems}


class ImportQuery(Schema):
    skip_invalid = fields.Bool(load_default=False, metadata={"description": "Import the good rows and report the "
                                                             "bad ones, instead of importing nothing."})


class ImportProblem(Schema):
    line = fields.Int()
    field = fields.Str()
    detail = fields.Str()


class ImportOut(Schema):
    imported = fields.Int()
    rows = fields.Int()
    errors = fields.List(fields.Nested(ImportProblem), metadata={"description": "The rows skipped, and why."})


@blp.route("/import")
class VolunteerImport(MethodView):
    @requires(*COORDINATORS)
    @blp.arguments(ImportQuery, location="query")
    @blp.response(201, ImportOut)
    @blp.doc(security=BEARER, requestBody={"content": {
        "text/csv": {"schema": {"type": "string"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}}}}}})
    def post(self, query):
        """Import a coordinator's volunteer spreadsheet (CSV, with a header row), all or nothing.

        Columns: name, phone, postcode (or latitude and longitude), max_distance_km, skills ("practical; driving"),
        languages ("en; fr"), gender, availability ("mon morning; wed afternoon"), weekly_cap, and for each check
        `<check>_done` and `<check>_expires` (e.g. safeguarding_done, criminal_record_expires; dates as 2026-01-05
        or 05/01/2026). Every row is checked as POST /volunteers checks one; a bad row is reported with its line
        number (the header is line 1) and column, and nothing is imported unless `skip_invalid=true`."""
        upload = request.files.get("file")
        raw = upload.read() if upload is not None else request.get_data()
        with service().sessions.begin() as session:
            try:
                outcome = import_volunteers(session, raw, g.user["communities"][0], query["skip_invalid"])
            except ValueError as err:
                return problem(422, "The file cannot be read", str(err),
                               errors=[{"line": 1, "field": "file", "detail": str(err)}])
            if outcome["errors"] and not query["skip_invalid"]:  # nothing was added
                return problem(422, "Some rows are not valid; nothing was imported",
                               f"{len({e['line'] for e in outcome['errors']})} of {outcome['rows']} rows have "
                               "problems. Correct them, or import with skip_invalid=true.",
                               errors=outcome["errors"])
        return outcome


# --- how a request is matched ----------------------------------------------------------------------------------


class CandidateOut(Schema):
    rank = fields.Int()
    volunteer_id = fields.UUID()
    name = fields.Str()
    distance_km = fields.Float()
    score = fields.Float()
    reasons = fields.List(fields.Str())


class MatchOut(Schema):
    request_id = fields.UUID()
    status = fields.Str()
    round = fields.Int()
    unmatched_reason = fields.Str(allow_none=True)
    candidates = fields.List(fields.Nested(CandidateOut))
    excluded = fields.Dict(keys=fields.Str(), values=fields.Int(),
                           metadata={"description": "How many volunteers each rule ruled out."})
    explanation = fields.Str()
    offers = fields.List(fields.Nested(TaskOut))


class AssignIn(Schema):
    volunteer_id = fields.UUID(required=True)


def find_request(session, request_id) -> MatchRequest:
    request = session.get(MatchRequest, request_id)
    if request is None or request.community not in g.user["communities"]:
        abort(404, message="Matching has not heard of this request.")
    return request


def match_view(session, request: MatchRequest) -> dict:
    """The request's candidates in order with their reasons, and what ruled the others out."""
    candidates, excluded = handlers.assess(session, request, utcnow(), Policy.from_env(), everyone=True)
    return {
        "request_id": request.request_id, "status": request.status, "round": request.round,
        "unmatched_reason": request.unmatched_reason,
        "candidates": [{"rank": n, "volunteer_id": c.volunteer.id, "name": c.volunteer.name,
                        "distance_km": round(c.distance_km, 2), "score": c.score, "reasons": list(c.reasons)}
                       for n, c in enumerate(candidates, start=1)],
        "excluded": {rule_text(rule): n for rule, n in excluded.most_common()},
        "explanation": explain(excluded) if excluded else "",
        "offers": list(request.offers),
    }


@matches.route("/<uuid:request_id>")
class Match(MethodView):
    @requires(*COORDINATORS)
    @matches.response(200, MatchOut)
    @matches.doc(security=BEARER)
    def get(self, request_id):
        """Who could be asked for this request, in what order and why, and which rule ruled out how many."""
        with service().sessions() as session:
            return match_view(session, find_request(session, request_id))


@matches.route("/<uuid:request_id>/assign")
class Assign(MethodView):
    @requires(*COORDINATORS)
    @matches.arguments(AssignIn)
    @matches.response(200, MatchOut)
    @matches.doc(security=BEARER)
    def post(self, data, request_id):
        """Give the task to a chosen volunteer (who must be eligible); open offers are withdrawn."""
        with service().sessions.begin() as session:
            request = handlers.locked(session, find_request(session, request_id).request_id)
            if request.status not in ("open", "unmatched"):
                abort(409, message=f"A {request.status} request cannot be assigned.")
            volunteer = find_volunteer(session, data["volunteer_id"])
            candidates, _ = handlers.assess(session, request, utcnow(), Policy.from_env(), everyone=True)
            if volunteer.id not in {c.volunteer.id for c in candidates} and not any(
                    o.volunteer_id == volunteer.id for o in request.offers):
                abort(409, message="That volunteer is not eligible for this request; see GET /matches/<id>.")
            offer = next((o for o in request.offers if o.volunteer_id == volunteer.id and o.status == "open"), None)
            if offer is None:
                offer = Offer(request=request, volunteer=volunteer, code=handlers._free_code(session),
                              round=request.round)
                session.add(offer)
            request.status = "open"
            handlers.accept(session, offer, utcnow(), by="coordinator")
            return match_view(session, request)


@matches.route("/<uuid:request_id>/rerun")
class Rerun(MethodView):
    @requires(*COORDINATORS)
    @matches.response(200, MatchOut)
    @matches.doc(security=BEARER)
    def post(self, request_id):
        """Match an unmatched request again, from the first round."""
        with service().sessions.begin() as session:
            request = handlers.locked(session, find_request(session, request_id).request_id)
            if request.status != "unmatched":
                abort(409, message=f"Only an unmatched request can be matched again; this one is {request.status}.")
            request.status, request.round, request.unmatched_reason = "open", 0, None
            handlers.offer_next(session, request)
            return match_view(session, request)


def create_app(test_config=None):
    """Matching's web app."""
    from services.matching import pages

    return create_service_app("matching", [blp, matches, pages.blp], test_config, title="Matching")
