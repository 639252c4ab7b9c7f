"""Matching's HTTP API: volunteers (with checks, availability and time away, registered one by one or from a
spreadsheet), and how a request is matched. Each view parses, calls one use case, and renders."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from http import HTTPStatus

import hashlib
import hmac

from flask import g, has_request_context, request, url_for
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from services.matching import service_layer
from services.matching.domain import (APPLICANT_STAGES, CHECK_KEY, INVITATION_STATUSES, LEAVING, LONGEST_LIFE_MONTHS,
                                      PUBLIC_TOPICS, Invalid, MatchingError, NotFound, TooManyApplications,
                                      check_problems, time_away_problems)
from services.matching.service_layer import VolunteerSheet
from shared import clock, idempotency
from shared.communities import all_communities
from shared.taxonomy import (BEFRIENDING_END_REASONS, CHECKS, DAYS, GENDERS, KINDS, PARTS_OF_DAY, RHYTHMS, SKILLS,
                             VOLUNTEER_STATUSES)
from shared.web import (Blueprint, Boolean, Float, Integer, PhoneNumber, QueryBoolean, Text, client_address,
                        csrf_exempt, current_actor, field_errors, known_postcode, normalise_phone, problem, requires,
                        service)

BEARER = [{"bearerAuth": []}]
COORDINATORS = ("coordinator", "admin")
blp = Blueprint("volunteers", __name__, url_prefix="/volunteers", description="Trained volunteers")
matches = Blueprint("matches", __name__, url_prefix="/matches",
                    description="How each request is matched: candidates, reasons, and a coordinator's choices")


applying = Blueprint("applicants", __name__, url_prefix="/applicants",
                     description="People applying to volunteer, and the coordinators' pipeline to approved")
RETRY_AFTER_SECONDS = 3600


def refused(error: MatchingError):
    """A use case's refusal as problem details: 404 for what is not there (or not the caller's), 422 naming each
    field for a value the community's rules do not allow, 429 for too many applications, else 409."""
    if isinstance(error, Invalid):
        errors = field_errors(error.messages)
        return problem(422, "Unprocessable Content", "; ".join(f"{e['field']}: {e['detail']}" for e in errors),
                       errors=errors)
    if isinstance(error, TooManyApplications):
        response = problem(429, "Too Many Requests", str(error))
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    status = HTTPStatus.NOT_FOUND if isinstance(error, NotFound) else HTTPStatus.CONFLICT
    return problem(status.value, status.phrase, str(error))


befriending = Blueprint("befriending", __name__, url_prefix="/befriending",
                        description="Befriending matches: a volunteer visiting a person at a rhythm, until ended")


training = Blueprint("training", __name__, url_prefix="/training",
                     description="Training sessions: scheduled, invited to by SMS (YES/NO), attendance recorded")

checks = Blueprint("checks", __name__, url_prefix="/volunteers/checks",
                   description="Each community's checks and training: their names, the evidence seen, how long they "
                               "last, and which kinds of help need which (administrators change them; every change "
                               "is audited and applies from then on)")


for _blueprint in (blp, matches, befriending, applying, training, checks):
    _blueprint.register_error_handler(MatchingError, refused)


def known_check(value: str) -> None:
    """One of the acting user's community's checks, unretired (a validator, so every bad field is named at once;
    the use case judges again). The community's checks are read once per request."""
    if not has_request_context() or "user" not in g:
        return
    if "matching_checks" not in g:
        with service().uow() as uow:
            g.matching_checks = uow.checks.rules(current_actor().community).active()
    if value not in g.matching_checks:
        raise ValidationError(f"Must be one of: {', '.join(g.matching_checks)}.")


class CheckIn(Schema):
    """That a check or training was done, and when it expires."""

    check = fields.Str(required=True, validate=[validate.Regexp(CHECK_KEY, error="Choose one of the options."),
                                                known_check],
                       metadata={"description": "One of the community's checks (GET /volunteers/checks): else 422."})
    done_on = fields.Date(required=True, metadata={"description": "By today, and not before 1900."})
    expires_on = fields.Date(load_default=None, allow_none=True, metadata={
        "description": "After done_on, and at most ten years after it; when not given, done_on plus the months "
                       "the check lasts in the community (none if it does not expire)."})

    @validates_schema
    def check_dates(self, data, **kwargs):
        """Plausible dates (the domain's rules): done by today, expiring after that and within ten years."""
        problems = check_problems(data["done_on"], data.get("expires_on"), clock.today()) \
            if "done_on" in data else {}
        if problems:
            raise ValidationError({name: [why] for name, why in problems.items()})


class WindowIn(Schema):
    """A weekly window: these days, this part of the day."""

    days = fields.List(fields.Str(validate=validate.OneOf(DAYS)), required=True, validate=validate.Length(min=1))
    part_of_day = fields.Str(required=True, validate=validate.OneOf(PARTS_OF_DAY))


class AwayIn(Schema):
    """Days away, both included."""

    starts_on = fields.Date(required=True, metadata={"description": "At most a year ago."})
    ends_on = fields.Date(required=True, metadata={"description": "On or after starts_on, at most a year ahead."})

    @validates_schema
    def check_dates(self, data, **kwargs):
        """Plausible dates (the domain's rules): from at most a year ago to at most a year ahead, in order."""
        problems = time_away_problems(data["starts_on"], data["ends_on"], clock.today()) \
            if "starts_on" in data and "ends_on" in data else {}
        if problems:
            raise ValidationError({name: [why] for name, why in problems.items()})


class VolunteerIn(Schema):
    """A volunteer as a coordinator registers them; give a postcode, or both latitude and longitude."""

    name = Text(required=True, blank=False, validate=validate.Length(max=200))
    phone = PhoneNumber(required=True)
    postcode = Text(validate=[validate.Length(max=10), known_postcode], metadata={
        "description": "A postcode the gazetteer knows (its district, e.g. FY1, is enough)."})
    latitude = Float(validate=validate.Range(-90, 90))
    longitude = Float(validate=validate.Range(-180, 180))
    max_distance_km = Float(required=True, validate=validate.Range(min=0, max=200, min_inclusive=False))
    skills = fields.List(fields.Str(validate=validate.OneOf(SKILLS)), required=True, validate=validate.Length(min=1))
    languages = fields.List(Text(validate=validate.Regexp(r"^[a-z]{2}$")), load_default=lambda: ["en"],
                            validate=validate.Length(min=1))
    gender = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(GENDERS))
    availability = fields.List(fields.Nested(WindowIn), load_default=list,
                               metadata={"description": "Weekly windows; none means any time."})
    weekly_cap = Integer(load_default=3, validate=validate.Range(min=1, max=21))
    checks = fields.List(fields.Nested(CheckIn), load_default=list)
    time_away = fields.List(fields.Nested(AwayIn), load_default=list)

    @validates_schema
    def check_place(self, data, partial=False, **kwargs):
        """A place is a postcode, or a latitude with a longitude."""
        if partial and not {"postcode", "latitude", "longitude"} & set(data):
            return
        if "postcode" not in data and ("latitude" not in data or "longitude" not in data):
            raise ValidationError({name: ["Give a postcode, or both latitude and longitude."]
                                   for name in ("postcode", "latitude", "longitude") if name not in data})


class VolunteerPatch(VolunteerIn):
    """What may change; only the fields given change. `status` pauses, resumes or records that they left."""

    status = fields.Str(validate=validate.OneOf(VOLUNTEER_STATUSES))


class TaskOut(Schema):
    """An offer made to a volunteer, and what became of it."""

    offer_id = fields.UUID(attribute="id")
    request_id = fields.UUID()
    code = fields.Str()
    status = fields.Str()
    created_at = fields.AwareDateTime()
    answered_at = fields.AwareDateTime(allow_none=True)
    hours = fields.Float(allow_none=True)


class VolunteerOut(Schema):
    """A volunteer as coordinators see them."""

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

    def _availability(self, v) -> list[dict]:
        """Their weekly windows."""
        return v.windows()

    def _active(self, v) -> bool:
        """True unless paused or left."""
        return v.status == "active"

    def _checks(self, v) -> list[dict]:
        """Each check with its dates, and whether it runs out soon."""
        today = clock.today()
        return [{"check": c.check, "done_on": c.done_on.isoformat(),
                 "expires_on": c.expires_on.isoformat() if c.expires_on else None,
                 "expires_soon": c.state(today) != "valid"} for c in v.checks]


class ContributionOut(Schema):
    """Hours a volunteer gave to a group activity they ran, or training they delivered."""

    source = fields.Str()
    kind = fields.Str()
    held_on = fields.Date()
    hours = fields.Float()


class VolunteerDetailOut(VolunteerOut):
    """A volunteer with their latest offers and tasks, the group activities they ran, and their hours this year."""

    tasks = fields.List(fields.Nested(TaskOut))
    contributions = fields.List(fields.Nested(ContributionOut))
    year_hours = fields.Float(metadata={"description": "Their hours this year (tasks, visits, group activities), "
                                                       "as HOURS by SMS tells them."})


class VolunteerWithTasks:
    """A looked-up volunteer as VolunteerDetailOut reads it: the volunteer's fields, `tasks`, `contributions` and
    `year_hours`."""

    def __init__(self, record: service_layer.VolunteerRecord):
        self.volunteer, self.tasks = record.volunteer, record.offers
        self.contributions, self.year_hours = record.contributions, record.year_hours

    def __getattr__(self, name: str):
        return getattr(self.volunteer, name)


class VolunteerQuery(Schema):
    """Filters of the volunteer list."""

    status = fields.Str(validate=validate.OneOf(VOLUNTEER_STATUSES))
    expiring_within_days = fields.Int(validate=validate.Range(min=0, max=365),
                                      metadata={"description": "Only volunteers with a check expiring this soon."})


@blp.route("")
class Volunteers(MethodView):
    """The community's volunteers."""

    @requires(*COORDINATORS)
    @blp.arguments(VolunteerIn)
    @blp.response(201, VolunteerOut)
    @blp.doc(security=BEARER, parameters=[idempotency.PARAMETER])
    def post(self, data):
        """Register a trained volunteer (once per Idempotency-Key)."""
        with service().uow() as uow:
            created = service_layer.register_volunteer(uow, current_actor(), data,
                                                       idempotency.Idempotency.of_request("volunteers"),
                                                       render=VolunteerOut().dump)
        return idempotency.answer(created.body, created.status_code, created.replayed,
                                  url_for("volunteers.VolunteerById", volunteer_id=created.body["id"]))

    @requires(*COORDINATORS)
    @blp.arguments(VolunteerQuery, location="query")
    @blp.response(200, VolunteerOut(many=True))
    @blp.paginate()
    @blp.doc(security=BEARER)
    def get(self, query, pagination_parameters):
        """The community's volunteers, by name (filter by status, or by a check expiring soon)."""
        with service().uow() as uow:
            return service_layer.list_volunteers(uow, current_actor(), pagination_parameters, clock.today(), **query)


@blp.route("/<uuid:volunteer_id>")
class VolunteerById(MethodView):
    """One volunteer."""

    @requires(*COORDINATORS)
    @blp.response(200, VolunteerDetailOut)
    @blp.doc(security=BEARER)
    def get(self, volunteer_id):
        """A volunteer, with their offers and tasks."""
        with service().uow() as uow:
            return VolunteerWithTasks(service_layer.volunteer_record(uow, current_actor(), volunteer_id))

    @requires(*COORDINATORS)
    @blp.arguments(VolunteerPatch(partial=tuple(VolunteerPatch._declared_fields)))  # a check or time away is whole
    @blp.response(200, VolunteerOut)
    @blp.doc(security=BEARER)
    def patch(self, data, volunteer_id):
        """Change a volunteer: checks given replace those of the same kind; time away given replaces the list."""
        with service().uow() as uow:
            return service_layer.update_volunteer(uow, current_actor(), volunteer_id, data)


# --- reading a coordinator's spreadsheet ------------------------------------------------------------------------

LIST_COLUMNS = ("skills", "languages")
CHECK_COLUMNS = {f"{check}_{edge}": (check, edge) for check in CHECKS for edge in ("done", "expires")}
COLUMNS = ("name", "phone", "postcode", "latitude", "longitude", "max_distance_km", "skills", "languages", "gender",
           "availability", "weekly_cap", *CHECK_COLUMNS)
SHEETS = ("text/csv", "multipart/form-data")  # how a spreadsheet may come
NUMBER_COLUMNS = ("latitude", "longitude", "max_distance_km", "weekly_cap")
# A community's own checks come in columns named the same way (<key>_done, <key>_expires); a key the community does
# not have is refused on its row, naming the column.
CHECK_COLUMN = re.compile(r"^([a-z][a-z0-9_]{1,31})_(done|expires)$")
_UK_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def _date(text: str) -> str:
    """A spreadsheet's date as ISO: 2026-01-05 stays; 05/01/2026 (day first, as UK and Canadian sheets write
    it) becomes 2026-01-05; anything else is left for the schema to refuse."""
    found = _UK_DATE.match(text)
    return f"{found[3]}-{int(found[2]):02d}-{int(found[1]):02d}" if found else text


def as_number(text: str) -> int | float | str:
    """A spreadsheet's number as a number ("3" -> 3, "53.81" -> 53.81); anything else is left for the schema to
    refuse."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def volunteer_from_row(row: dict[str, str]) -> dict:
    """A CSV row as the body POST /volunteers takes: lists split on ';' or ',', availability as 'mon:morning',
    each check (the community's own too) as <check>_done and <check>_expires columns. Empty cells are left out."""
    cells = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k}
    data: dict = {}
    for name in ("name", "phone", "postcode", "gender", "latitude", "longitude", "max_distance_km", "weekly_cap"):
        if cells.get(name):
            data[name] = cells[name].lower() if name == "gender" else cells[name]
    for name in NUMBER_COLUMNS:
        if name in data:
            data[name] = as_number(data[name])
    for name in LIST_COLUMNS:
        if cells.get(name):
            data[name] = [item.strip().lower() for item in re.split(r"[;,]", cells[name]) if item.strip()]
    if cells.get("availability"):
        windows = [item.strip().lower().replace(" ", ":") for item in re.split(r"[;,]", cells["availability"])
                   if item.strip()]
        data["availability"] = [{"days": [w.split(":")[0]], "part_of_day": w.partition(":")[2]} for w in windows]
    checks = {}
    for column in cells:
        if (found := CHECK_COLUMN.match(column)) and cells[column]:
            check, edge = found.groups()
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
        return f"{check}_{'expires' if parts[-1] == 'expires_on' else 'done'}" if len(parts) > 2 else f"{check}_done"
    return parts[0]


def read_csv(raw: bytes) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; line 1 is the header. Excel's byte-order mark and CRLF are fine,
    and a sheet saved in Windows-1252 is read as such. ValueError says why a file cannot be read."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError as err:
            raise ValueError("The file is not text in UTF-8 or Windows-1252; save it as CSV (UTF-8).") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            if any((value or "").strip() for value in row.values() if isinstance(value, str)):
                rows.append((reader.line_num, row))
    except csv.Error as err:
        raise ValueError(f"The file is not CSV: line {reader.line_num}: {err}.") from err
    if reader.fieldnames is None:
        raise ValueError("The file is empty.")
    unknown = [name for name in reader.fieldnames if name and name.strip().lower() not in COLUMNS
               and not CHECK_COLUMN.match(name.strip().lower())]
    if unknown:
        raise ValueError(f"Unknown column(s): {', '.join(unknown)}. The columns are: {', '.join(COLUMNS)}.")
    return rows


def read_sheet(raw: bytes) -> VolunteerSheet:
    """A CSV spreadsheet with every row checked as POST /volunteers checks a body, each problem named by its line
    and column. ValueError says why a file cannot be read."""
    rows = read_csv(raw)
    valid, problems = [], []
    for line, row in rows:
        data = volunteer_from_row(row)
        try:
            valid.append((line, VolunteerIn().load(data)))
        except ValidationError as err:
            problems += [{"line": line, "field": _column_of(e["field"], data), "detail": e["detail"]}
                         for e in field_errors(err.messages)]
    return VolunteerSheet(rows=len(rows), valid=valid, problems=problems)


class ImportQuery(Schema):
    """How to import."""

    skip_invalid = QueryBoolean(load_default=False, metadata={"description": "Import the good rows and report the "
                                                             "bad ones, instead of importing nothing."})


class ImportProblem(Schema):
    """A bad row: its line (the header is line 1), the column, and what is wrong."""

    line = fields.Int()
    field = fields.Str()
    detail = fields.Str()


class ImportOut(Schema):
    """What an import did."""

    imported = fields.Int()
    rows = fields.Int()
    errors = fields.List(fields.Nested(ImportProblem), metadata={"description": "The rows skipped, and why."})


@blp.route("/import")
class VolunteerImport(MethodView):
    """A spreadsheet of volunteers."""

    @requires(*COORDINATORS)
    @blp.arguments(ImportQuery, location="query")
    @blp.response(201, ImportOut)
    @blp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE")
    @blp.doc(security=BEARER, requestBody={"required": True, "content": {
        "text/csv": {"schema": {"type": "string"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}}}}}})
    def post(self, query):
        """Import a coordinator's volunteer spreadsheet (CSV, with a header row), all or nothing.

        Columns: name, phone, postcode (or latitude and longitude), max_distance_km, skills ("practical; driving"),
        languages ("en; fr"), gender, availability ("mon morning; wed afternoon"), weekly_cap, and for each of the
        community's checks `<check>_done` and `<check>_expires` (e.g. safeguarding_done, criminal_record_expires;
        dates as 2026-01-05 or 05/01/2026; without an expiry, a check expires as it lasts in the community).
        Every row is checked as POST /volunteers checks one; a bad row is reported with its line number (the header
        is line 1) and column, and nothing is imported unless `skip_invalid=true`."""
        if request.mimetype not in SHEETS and (request.mimetype or request.content_length):
            return problem(415, "Unsupported Media Type", "Send the spreadsheet as text/csv or as a "
                           f"multipart/form-data `file`, not {request.mimetype or 'untyped'}.")
        upload = request.files.get("file")
        try:
            sheet = read_sheet(upload.read() if upload is not None else request.get_data())
        except ValueError as err:
            return problem(422, "The file cannot be read", str(err),
                           errors=[{"line": 1, "field": "file", "detail": str(err)}])
        with service().uow() as uow:
            outcome = service_layer.import_volunteers(uow, current_actor(), sheet, query["skip_invalid"])
        if outcome["errors"] and not query["skip_invalid"]:  # nothing was added
            return problem(422, "Some rows are not valid; nothing was imported",
                           f"{len({e['line'] for e in outcome['errors']})} of {outcome['rows']} rows have "
                           "problems. Correct them, or import with skip_invalid=true.", errors=outcome["errors"])
        return outcome


# --- how a request is matched ----------------------------------------------------------------------------------

class CandidateOut(Schema):
    """A volunteer who could be asked, in their place in the order, and why there."""

    rank = fields.Int()
    volunteer_id = fields.UUID()
    name = fields.Str()
    distance_km = fields.Float()
    score = fields.Float()
    reasons = fields.List(fields.Str())


class MatchOut(Schema):
    """How a request is being matched."""

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
    """The volunteer a coordinator chose."""

    volunteer_id = fields.UUID(required=True)


class DoneIn(Schema):
    """That the volunteer holding the task did it, as a coordinator records it for them."""

    hours = Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=24, min_inclusive=False),
                  metadata={"description": "The hours they gave, as DONE <code> <hours> would say."})


@matches.route("/<uuid:request_id>")
class Match(MethodView):
    """How a request is matched."""

    @requires(*COORDINATORS)
    @matches.response(200, MatchOut)
    @matches.doc(security=BEARER)
    def get(self, request_id):
        """Who could be asked for this request, in what order and why, and which rule ruled out how many."""
        with service().uow() as uow:
            return service_layer.explain_match(uow, current_actor(), request_id, service().settings.policy,
                                               clock.utcnow())


@matches.route("/<uuid:request_id>/assign")
class Assign(MethodView):
    """A coordinator's choice of volunteer."""

    @requires(*COORDINATORS)
    @matches.arguments(AssignIn)
    @matches.response(200, MatchOut)
    @matches.doc(security=BEARER)
    def post(self, data, request_id):
        """Give the task to a chosen volunteer (who must be eligible); open offers are withdrawn."""
        with service().uow() as uow:
            return service_layer.assign(uow, current_actor(), request_id, data["volunteer_id"],
                                        service().settings.policy, clock.utcnow())


@matches.route("/<uuid:request_id>/rerun")
class Rerun(MethodView):
    """Matching an unmatched request again."""

    @requires(*COORDINATORS)
    @matches.response(200, MatchOut)
    @matches.doc(security=BEARER)
    def post(self, request_id):
        """Match an unmatched request again, from the first round."""
        with service().uow() as uow:
            return service_layer.rerun(uow, current_actor(), request_id, service().settings.policy, clock.utcnow())


@matches.route("/<uuid:request_id>/done")
class Done(MethodView):
    """A task done, recorded by a coordinator on the volunteer's behalf."""

    @requires(*COORDINATORS)
    @matches.arguments(DoneIn)
    @matches.response(204)
    @matches.doc(security=BEARER)
    def post(self, data, request_id):
        """Record that the volunteer holding the task did it, with their hours (as their DONE text would)."""
        with service().uow() as uow:
            service_layer.complete_for_volunteer(uow, current_actor(), request_id, data["hours"],
                                                 service().settings.policy, clock.utcnow())



# --- befriending matches ---------------------------------------------------------------------------------------

class BefriendingOut(Schema):
    """A befriending match: its rhythm, visits, and what needs the coordinator (an overdue visit, its review)."""

    id = fields.UUID(attribute="match.id")
    request_id = fields.UUID(attribute="match.request_id")
    volunteer_id = fields.UUID(attribute="match.volunteer_id")
    rhythm = fields.Str(attribute="match.rhythm", metadata={"enum": list(RHYTHMS)})
    started_on = fields.Date(attribute="match.started_on")
    review_on = fields.Date(attribute="match.review_on")
    last_visit_on = fields.Date(attribute="match.last_visit_on", allow_none=True)
    visits = fields.Int(attribute="match.visits")
    ended_on = fields.Date(attribute="match.ended_on", allow_none=True)
    end_reason = fields.Str(attribute="match.end_reason", allow_none=True,
                            metadata={"enum": list(BEFRIENDING_END_REASONS)})
    visit_overdue = fields.Bool(attribute="overdue")
    review_due = fields.Bool()
    overdue_from = fields.Date(attribute="next_visit_by",
                               metadata={"description": "The day a visit becomes overdue if none is logged."})


class EndIn(Schema):
    """Why a befriending match ends."""

    reason = fields.Str(required=True, validate=validate.OneOf(sorted(BEFRIENDING_END_REASONS)), metadata={
        "description": "; ".join(f"{key}: {words}" for key, words in BEFRIENDING_END_REASONS.items())})


class BefriendingQuery(Schema):
    request_id = fields.UUID(metadata={"description": "One request's matches, ended too (default: every open match)."})


@befriending.route("")
class BefriendingList(MethodView):
    """Befriending matches."""

    @requires(*COORDINATORS)
    @befriending.arguments(BefriendingQuery, location="query")
    @befriending.response(200, BefriendingOut(many=True))
    @befriending.doc(security=BEARER)
    def get(self, query):
        """Every open befriending match (or one request's), latest first, with an overdue visit or a review due
        marked."""
        with service().uow() as uow:
            return service_layer.befriending_of(uow, current_actor(), query.get("request_id"), clock.utcnow())


@befriending.route("/<uuid:match_id>")
class BefriendingById(MethodView):
    """One befriending match."""

    @requires(*COORDINATORS)
    @befriending.response(200, BefriendingOut)
    @befriending.doc(security=BEARER)
    def get(self, match_id):
        """A befriending match: its rhythm, visits, and whether a visit is overdue or its review due."""
        with service().uow() as uow:
            return service_layer.befriending_match(uow, current_actor(), match_id, clock.utcnow())


@befriending.route("/<uuid:match_id>/end")
class EndBefriending(MethodView):
    """Ending a befriending match."""

    @requires(*COORDINATORS)
    @befriending.arguments(EndIn)
    @befriending.response(200, BefriendingOut)
    @befriending.doc(security=BEARER)
    def post(self, data, match_id):
        """End the match with a reason: its volunteer is thanked by SMS and its request completes."""
        with service().uow() as uow:
            service_layer.end_befriending(uow, current_actor(), match_id, data["reason"], clock.utcnow())
        with service().uow() as uow:
            return service_layer.befriending_match(uow, current_actor(), match_id, clock.utcnow())


# --- people applying to volunteer ----------------------------------------------------------------------------------

OFFERED_KINDS = sorted(kind for kind, about in KINDS.items() if about.offered)
CONSENT = ("I agree that the Compassionate Communities team may keep what I gave here, contact me about volunteering "
           "by phone and SMS, and ask me for the checks and training the help I chose needs.")


class ApplicationIn(Schema):
    """An application to volunteer, as the public page sends it. `website` is a field people never see (a honeypot):
    filled in, the application is answered as taken and nothing is kept."""

    community = fields.Str(required=True, validate=validate.OneOf(sorted(all_communities())))
    name = Text(required=True, blank=False, validate=validate.Length(max=200))
    phone = Text(required=True, blank=False, validate=validate.Length(max=40), metadata={
        "description": "A mobile number: national in the community's country, or international; kept in E.164."})
    postcode = Text(required=True, blank=False, validate=[validate.Length(max=10), known_postcode])
    kinds = fields.List(fields.Str(validate=validate.OneOf(OFFERED_KINDS)), required=True,
                        validate=validate.Length(min=1), metadata={"description": "What they would like to do."})
    consent = Boolean(required=True, metadata={"description": "That they agree to the consent statement: " + CONSENT})
    website = fields.Str(load_default="", metadata={"description": "Leave empty."})

    @validates_schema(skip_on_field_errors=False)
    def check_phone_and_consent(self, data, **kwargs):
        """A phone number read as the community's country writes them, and the consent given."""
        problems = {}
        if data.get("consent") is not True and "consent" in data:
            problems["consent"] = ["Tick to say you agree, so that we can keep your details and contact you."]
        if "phone" in data:
            region = all_communities().get(data.get("community"), None)
            try:
                normalise_phone(data["phone"], region.country if region else service().settings.default_region)
            except ValueError as err:
                problems["phone"] = [f"{data['phone']!r} {err}."]
        if problems:
            raise ValidationError(problems)

    @post_load
    def in_e164(self, data, **kwargs):
        """The phone number kept in E.164."""
        data["phone"] = normalise_phone(data["phone"], all_communities()[data["community"]].country)
        return data


class ApplicationOut(Schema):
    """That an application was received (the same whether it was kept or not)."""

    message = fields.Str()


RECEIVED = {"message": "Thank you for applying. We will text you to say we have your application, and a coordinator "
                       "will be in touch."}


def address_key() -> str:
    """The address this request came from, as a keyed hash: enough to count applications by, never the address."""
    return hmac.new(service().settings.secret_key.encode(), client_address().encode(), hashlib.sha256).hexdigest()


def take_application(data: dict) -> None:
    """Keep an application and have it acknowledged, unless the honeypot was filled (then nothing is kept);
    TooManyApplications when the address sent as many as an hour allows."""
    if data.get("website", "").strip():
        return
    with service().uow() as uow:
        service_layer.apply(uow, data["community"], data, address_key(), clock.utcnow())


class StageIn(Schema):
    """Where a coordinator moves an applicant: the next stage, or out (withdrawn, declined) with a reason."""

    stage = fields.Str(required=True, validate=validate.OneOf(APPLICANT_STAGES[1:]))
    reason = Text(load_default=None, allow_none=True, validate=validate.Length(max=500),
                  metadata={"description": "Why they were withdrawn or declined (needed for those)."})

    @validates_schema
    def check_reason(self, data, **kwargs):
        """Withdrawn and declined say why."""
        if data.get("stage") in LEAVING and not (data.get("reason") or "").strip():
            raise ValidationError({"reason": ["Say why they are withdrawn or declined."]})


class StageOut(Schema):
    """One move of an applicant."""

    stage = fields.Str()
    previous = fields.Str(allow_none=True)
    at = fields.DateTime()
    actor = fields.Str()
    reason = fields.Str(allow_none=True)


class ApplicantOut(Schema):
    """An applicant, where they are, and since when."""

    id = fields.UUID()
    name = fields.Str()
    phone = fields.Str()
    postcode = fields.Str()
    kinds = fields.List(fields.Str())
    stage = fields.Str()
    applied_at = fields.DateTime()
    stage_since = fields.DateTime()
    waiting_too_long = fields.Method("too_long")
    reason = fields.Str(allow_none=True)
    volunteer_id = fields.UUID(allow_none=True, metadata={"description": "Once approved: their id in the roster."})
    history = fields.List(fields.Nested(StageOut))

    def too_long(self, applicant) -> bool:
        """At their stage longer than their community allows."""
        days = all_communities()[applicant.community].applicant_wait_days
        return applicant.waiting_too_long(clock.utcnow(), days)


class ApplicantQuery(Schema):
    """Which applicants to list."""

    stage = fields.Str(validate=validate.OneOf(APPLICANT_STAGES))


@applying.route("")
class Applicants(MethodView):
    """People applying to volunteer."""

    @csrf_exempt
    @applying.arguments(ApplicationIn)
    @applying.response(202, ApplicationOut)
    @applying.alt_response(429, description="Too many applications from this address in the last hour; nothing "
                                            "was kept.")
    def post(self, data):
        """Apply to volunteer (public: no token). They are texted an acknowledgement; ten an hour from one address."""
        take_application(data)
        return RECEIVED

    @requires(*COORDINATORS)
    @applying.arguments(ApplicantQuery, location="query")
    @applying.response(200, ApplicantOut(many=True))
    @applying.doc(security=BEARER)
    def get(self, query):
        """The community's applicants (at a stage), longest waiting first."""
        with service().uow() as uow:
            return service_layer.applicants(uow, current_actor(), query.get("stage"))


@applying.route("/<uuid:applicant_id>/stage")
class ApplicantStage(MethodView):
    """Moving an applicant through the pipeline."""

    @requires(*COORDINATORS)
    @applying.arguments(StageIn)
    @applying.response(200, ApplicantOut)
    @applying.doc(security=BEARER)
    def post(self, data, applicant_id):
        """Move an applicant to the next stage (approved: they become an active volunteer), or withdraw or decline
        them with a reason; recorded with who did it and when."""
        with service().uow() as uow:
            return service_layer.move_applicant(uow, current_actor(), applicant_id, data["stage"], clock.utcnow(),
                                                data.get("reason"))


# --- training sessions --------------------------------------------------------------------------------------------

class SessionIn(Schema):
    """A session to schedule: its topic, when, where (a place, or online), the trainer, how many it takes, the check
    attending grants (or none), and, for a public one, which kind."""

    topic = Text(required=True, validate=validate.Length(min=1, max=200))
    starts_at = fields.AwareDateTime(required=True, metadata={"description": "From today to a year ahead."})
    place = Text(load_default=None, allow_none=True, validate=validate.Length(max=200))
    online = Boolean(load_default=False)
    trainer = Text(required=True, validate=validate.Length(min=1, max=200))
    capacity = Integer(required=True, validate=validate.Range(min=1, max=500))
    grants = fields.Str(load_default=None, allow_none=True, validate=validate.Regexp(CHECK_KEY),
                        metadata={"description": "The key of one of the community's checks (GET /volunteers/checks)."})
    public = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(sorted(PUBLIC_TOPICS)),
                        metadata={"description": "A public session (Future Life Planning, Dying Matters)."})

    @validates_schema
    def check_session(self, data, **kwargs):
        """A place unless online; within a year from today; a public session grants no check."""
        problems = session_problems(data)
        if problems:
            raise ValidationError(problems)


def session_problems(data: dict) -> dict[str, list[str]]:
    """What is wrong with a session's details, by field (the form says the same beside each)."""
    problems: dict[str, list[str]] = {}
    if not data.get("online") and not (data.get("place") or "").strip():
        problems["place"] = ["Say where it is, or that it is online."]
    starts_at = data.get("starts_at")
    if starts_at is not None and not clock.utcnow() - timedelta(days=1) <= starts_at \
            <= clock.utcnow() + timedelta(days=366):
        problems["starts_at"] = ["A session is scheduled from today to a year ahead."]
    if data.get("public") and data.get("grants"):
        problems["grants"] = ["A public session grants no check."]
    return problems


class InvitationOut(Schema):
    """Someone invited, and their answer and attendance."""

    id = fields.UUID()
    who = fields.Str(metadata={"description": "Volunteer, Applicant or Public."})
    volunteer_id = fields.UUID(allow_none=True)
    applicant_id = fields.UUID(allow_none=True)
    name = fields.Str(allow_none=True)
    phone = fields.Str()
    code = fields.Str()
    status = fields.Str(metadata={"description": ", ".join(INVITATION_STATUSES)})
    invited_at = fields.DateTime()
    answered_at = fields.DateTime(allow_none=True)
    attended_on = fields.Date(allow_none=True)


class SessionOut(Schema):
    """A session, with its invitations."""

    id = fields.UUID()
    community = fields.Str()
    topic = fields.Str()
    starts_at = fields.DateTime()
    place = fields.Str(allow_none=True)
    online = fields.Bool()
    trainer = fields.Str()
    capacity = fields.Int()
    grants = fields.Str(allow_none=True)
    public = fields.Str(allow_none=True)
    code = fields.Str(allow_none=True, metadata={"description": "A public session's: YES <code> signs up."})
    taken = fields.Method("places_taken")
    invitations = fields.List(fields.Nested(InvitationOut))

    def places_taken(self, session) -> int:
        """Places taken (accepted)."""
        return session.taken()


class PublicPersonIn(Schema):
    """A member of the public added to a public session."""

    phone = PhoneNumber(required=True)
    name = Text(load_default=None, allow_none=True, validate=validate.Length(max=200))


class InviteIn(Schema):
    """Who to invite: applicants (at checks or training) and volunteers by id; to a public session, people."""

    applicants = fields.List(fields.UUID(), load_default=list)
    volunteers = fields.List(fields.UUID(), load_default=list)
    people = fields.List(fields.Nested(PublicPersonIn), load_default=list)


class AttendanceIn(Schema):
    """Who attended, by invitation id."""

    invitations = fields.List(fields.UUID(), required=True, validate=validate.Length(min=1))


@training.route("/sessions")
class Sessions(MethodView):
    """Training sessions."""

    @requires(*COORDINATORS)
    @training.arguments(SessionIn)
    @training.response(201, SessionOut)
    @training.doc(security=BEARER)
    def post(self, data):
        """Schedule a session in your community."""
        with service().uow() as uow:
            return service_layer.schedule_session(uow, current_actor(), data, clock.utcnow())

    @requires(*COORDINATORS)
    @training.response(200, SessionOut(many=True))
    @training.doc(security=BEARER)
    def get(self):
        """Your communities' sessions, soonest first."""
        with service().uow() as uow:
            return service_layer.training_sessions(uow, current_actor())


@training.route("/sessions/<uuid:session_id>")
class OneSession(MethodView):
    """One session."""

    @requires(*COORDINATORS)
    @training.response(200, SessionOut)
    @training.doc(security=BEARER)
    def get(self, session_id):
        """A session with who is invited, their answers and attendance."""
        with service().uow() as uow:
            return service_layer.training_session(uow, current_actor(), session_id)


@training.route("/sessions/<uuid:session_id>/invitations")
class SessionInvitations(MethodView):
    """Inviting people to a session."""

    @requires(*COORDINATORS)
    @training.arguments(InviteIn)
    @training.response(200, SessionOut)
    @training.doc(security=BEARER)
    def post(self, data, session_id):
        """Invite applicants and volunteers (each texted, with a code to answer YES or NO), or add members of the
        public to a public session."""
        with service().uow() as uow:
            service_layer.invite(uow, current_actor(), session_id, clock.utcnow(), data["applicants"],
                                 data["volunteers"], data["people"])
        with service().uow() as uow:
            return service_layer.training_session(uow, current_actor(), session_id)


@training.route("/sessions/<uuid:session_id>/attendance")
class SessionAttendance(MethodView):
    """Recording who came."""

    @requires(*COORDINATORS)
    @training.arguments(AttendanceIn)
    @training.response(200, SessionOut)
    @training.doc(security=BEARER)
    def post(self, data, session_id):
        """Record who attended: each gets the check the session grants (an applicant, once approved)."""
        with service().uow() as uow:
            service_layer.record_attendance(uow, current_actor(), session_id, data["invitations"], clock.utcnow(),
                                            service().settings.secret_key)
        with service().uow() as uow:
            return service_layer.training_session(uow, current_actor(), session_id)
# --- a community's checks and training, as its administrators define them ----------------------------------------

ADMINS = ("admin",)
KEY_RULE = "2 to 32 lowercase letters, digits or _, starting with a letter."


class CheckTypeIn(Schema):
    """A check or training the community asks of volunteers."""

    key = fields.Str(required=True, validate=validate.Regexp(CHECK_KEY, error=f"Must be {KEY_RULE}"),
                     metadata={"description": f"How the API and spreadsheets name it: {KEY_RULE}", "example":
                               "culturally_safe_practice"})
    name = Text(required=True, blank=False, validate=validate.Length(max=200),
                metadata={"example": "Culturally safe practice training"})
    evidence = Text(load_default="", validate=validate.Length(max=500),
                    metadata={"description": "What a coordinator sees before recording it.",
                              "example": "certificate seen"})
    lasts_months = Integer(load_default=None, allow_none=True, validate=validate.Range(1, LONGEST_LIFE_MONTHS),
                           metadata={"description": "How long it lasts; null: it does not expire.", "example": 24})


class CheckTypePatch(Schema):
    """What may change of a check: only the fields given change. `retired` true: no longer asked for or recorded."""

    name = Text(blank=False, validate=validate.Length(max=200))
    evidence = Text(validate=validate.Length(max=500))
    lasts_months = Integer(allow_none=True, validate=validate.Range(1, LONGEST_LIFE_MONTHS))
    retired = Boolean()


class CheckTypeOut(Schema):
    """A check or training of the community."""

    key = fields.Str()
    name = fields.Str()
    evidence = fields.Str()
    lasts_months = fields.Int(allow_none=True)
    retired = fields.Bool()


class RequirementIn(Schema):
    """The checks a kind of help needs: every one, in date on the day of the task."""

    checks = fields.List(fields.Str(), required=True,
                         metadata={"description": "Keys of unretired checks; [] for none."})


class RequirementOut(Schema):
    """A kind of help and the checks it needs in the community."""

    kind = fields.Str()
    label = fields.Str()
    checks = fields.List(fields.Str())


class CheckRuleChangeOut(Schema):
    """One change to the community's checks or requirements: who, when, before and after."""

    subject = fields.Str(metadata={"description": "check_type:<key> or requirement:<kind>"})
    before = fields.Dict(allow_none=True)
    after = fields.Dict()
    at = fields.AwareDateTime()
    actor = fields.Str()
    role = fields.Str()


class CheckRulesOut(Schema):
    """The community's checks (retired ones too), which kinds of help need which, and the latest changes."""

    community = fields.Str()
    check_types = fields.List(fields.Nested(CheckTypeOut))
    requirements = fields.List(fields.Nested(RequirementOut))
    changes = fields.List(fields.Nested(CheckRuleChangeOut))


def rules_out(view: service_layer.CheckRulesView) -> dict:
    """The community's rules as CheckRulesOut reads them."""
    return {"community": view.community, "check_types": list(view.rules.types.values()),
            "requirements": [{"kind": kind, "label": details.label, "checks": list(view.rules.needed(kind))}
                             for kind, details in KINDS.items() if details.offered],
            "changes": view.changes}


@checks.route("")
class CheckTypes(MethodView):
    """The community's checks and training."""

    @requires(*ADMINS)
    @checks.response(200, CheckRulesOut)
    @checks.doc(security=BEARER)
    def get(self):
        """The checks of the administrator's community, which kinds of help need which, and who changed what."""
        with service().uow() as uow:
            return rules_out(service_layer.check_rules(uow, current_actor()))

    @requires(*ADMINS)
    @checks.arguments(CheckTypeIn)
    @checks.response(201, CheckTypeOut)
    @checks.doc(security=BEARER)
    def post(self, data):
        """Add a check or training: it can be recorded for volunteers and required for kinds of help from now on."""
        with service().uow() as uow:
            return service_layer.add_check_type(uow, current_actor(), data, clock.utcnow())


@checks.route("/<key>")
class CheckTypeByKey(MethodView):
    """One check of the community."""

    @requires(*ADMINS)
    @checks.arguments(CheckTypePatch)
    @checks.response(200, CheckTypeOut)
    @checks.doc(security=BEARER)
    def patch(self, data, key):
        """Rename a check, change its evidence or how long it lasts, or retire it (audited; from now on)."""
        with service().uow() as uow:
            return service_layer.change_check_type(uow, current_actor(), key, data, clock.utcnow())


@checks.route("/requirements/<kind>")
class Requirement(MethodView):
    """The checks one kind of help needs in the community."""

    @requires(*ADMINS)
    @checks.arguments(RequirementIn)
    @checks.response(200, RequirementOut)
    @checks.doc(security=BEARER)
    def put(self, data, kind):
        """Set the checks a kind of help needs (audited): from now on, volunteers without one in date are not
        asked for it; offers already made stay."""
        try:
            with service().uow() as uow:
                needed = service_layer.set_requirements(uow, current_actor(), {kind: data["checks"]}, clock.utcnow())
        except Invalid as err:  # about this kind's checks: the body's `checks`
            raise Invalid({"checks": err.messages[f"requires.{kind}"]}) from err
        return {"kind": kind, "label": KINDS[kind].label, "checks": list(needed[kind])}
