"""Intake's HTTP API: requests logged by coordinators, referrals from PCN staff, social prescribers and partner
organisations, and FHIR ServiceRequests from health systems. Each view parses, calls one use case, and renders."""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any, Callable

from flask import Response, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from services.intake import fhir, service_layer
from services.intake.domain import (CONSENTS, MONITORING_ANSWERS, AlreadyDied, IntakeError, NotAnAnswer, NotFound,
                                    NotLinkable, NotMergeable, NotOffered, NotOpen, SupportRequest, birth_date_problem,
                                    window_problems)
from shared import clock, communities, equity, gazetteer, idempotency
from shared.taxonomy import (BEFRIENDING_KINDS, DAYS, GENDERS, KINDS, PARTS_OF_DAY, REFERRER_SOURCES,
                             REQUEST_STATUSES, RHYTHMS, URGENCIES)
from shared.web import (PROBLEM, Blueprint, Boolean, Float, Integer, PhoneNumber, Text, checks_own_text, current_actor,
                        field_errors, is_json, known_postcode, requires, service, unstorable)

blp = Blueprint("requests", __name__, url_prefix="/requests", description="Requests for support (coordinators)")
referrals = Blueprint("referrals", __name__, url_prefix="/referrals",
                      description="Referrals from PCN staff, social prescribers and partner organisations")
fhir_blp = Blueprint("fhir", __name__, url_prefix="/fhir",
                     description="HL7 FHIR R4: ServiceRequest referrals (alone or in a transaction Bundle), their "
                                 "Tasks, and the CapabilityStatement")
BEARER = [{"bearerAuth": []}]
FHIR_JSON = "application/fhir+json"
RESOURCE = {"type": "object", "required": ["resourceType"], "properties": {"resourceType": {"type": "string"}}}
OPERATION_OUTCOME = {"type": "object", "required": ["resourceType", "issue"], "properties": {
    "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
    "issue": {"type": "array", "items": {"type": "object"}}}}


def fhir_answer(description: str, schema: dict[str, Any] = OPERATION_OUTCOME, problem: bool = False) -> dict:
    """How a FHIR endpoint documents an answer: a FHIR resource (and problem details for what is not FHIR's)."""
    content = {FHIR_JSON: {"schema": schema}}
    if problem:
        content[PROBLEM] = {"schema": {"$ref": "#/components/schemas/Problem"}}
    return {"description": description, "content": content}


# --- what comes in ---------------------------------------------------------------------------------------------


def plausible_birth(born) -> None:
    """A date of birth the domain finds plausible."""
    why = birth_date_problem(born, clock.today())
    if why:
        raise ValidationError(why)


class PersonIn(Schema):
    """The person who needs support."""

    name = Text(required=True, blank=False, validate=validate.Length(max=200))
    phone = PhoneNumber(load_default=None, allow_none=True)
    address = Text(multiline=True, load_default="", validate=validate.Length(max=500))
    postcode = Text(validate=[validate.Length(max=10), known_postcode], metadata={
        "description": "A postcode the gazetteer knows (its district, e.g. FY1, is enough)."})
    latitude = Float(validate=validate.Range(-90, 90))
    longitude = Float(validate=validate.Range(-180, 180))
    preferred_language = Text(load_default="en", validate=validate.Regexp(r"^[a-z]{2}$"))
    date_of_birth = fields.Date(load_default=None, allow_none=True, validate=plausible_birth,
                                metadata={"description": "In the past, and not before 1900."})
    is_carer = Boolean(load_default=False, metadata={"description": "The person is an unpaid carer."})

    @validates_schema
    def check_place(self, data, partial=False, **kwargs):
        """A postcode we know (its district and centre fill in the place), or both coordinates; in a change, only
        a new postcode moves the place."""
        if "postcode" in data:
            try:
                place = gazetteer.locate(data["postcode"])
            except gazetteer.UnknownPostcode as err:
                raise ValidationError({"postcode": [str(err)]}) from err
            data["area"] = place.district
            data.setdefault("latitude", place.latitude)
            data.setdefault("longitude", place.longitude)
        elif not partial and ("latitude" not in data or "longitude" not in data):
            raise ValidationError({name: ["Give a postcode, or both latitude and longitude."]
                                   for name in ("postcode", "latitude", "longitude") if name not in data})


class WhenIn(Schema):
    """A one-off window (start and end), or days and a part of the day ("any weekday afternoon")."""

    start = fields.AwareDateTime(metadata={"description": "From yesterday on."})
    end = fields.AwareDateTime(metadata={"description": "After start, at most 31 days after it (longer help is a "
                                                        "recurring request: see repeat), and at most a year ahead."})
    days = fields.List(fields.Str(validate=validate.OneOf(DAYS)), validate=validate.Length(min=1))
    part_of_day = fields.Str(validate=validate.OneOf(PARTS_OF_DAY))

    @validates_schema
    def check_shape(self, data, **kwargs):
        """Either start and end, or days and part_of_day; a plausible window (the domain's rules)."""
        one_off, flexible = ("start" in data or "end" in data), ("days" in data or "part_of_day" in data)
        if one_off == flexible:
            raise ValidationError("Give start and end, or days and part_of_day.")
        needed = ("start", "end") if one_off else ("days", "part_of_day")
        missing = {name: ["Missing data for required field."] for name in needed if name not in data}
        if missing:
            raise ValidationError(missing)
        problems = window_problems(data["start"], data["end"], clock.utcnow()) if one_off else {}
        if problems:
            raise ValidationError({name: [why] for name, why in problems.items()})


class RepeatIn(Schema):
    """A recurring task, e.g. weekly shopping for six weeks."""

    every_weeks = Integer(required=True, validate=validate.Range(min=1, max=8))
    occurrences = Integer(required=True, validate=validate.Range(min=2, max=52))


REVIEW_AFTER_MONTHS = 3  # a befriending match's first review, unless the coordinator chooses a date


class BefriendingIn(Schema):
    """A befriending request: one volunteer visits the person at a rhythm, with no end date, until a coordinator
    ends the match; offered once, not per visit."""

    rhythm = fields.Str(required=True, validate=validate.OneOf(RHYTHMS))
    review_on = fields.Date(metadata={"description": "When the coordinator reviews the match: after today, within "
                                                     "a year; 3 months on if not given."})

    @validates_schema
    def plausible_review(self, data, **kwargs):
        """A review date after today and within a year."""
        today = clock.today()
        if "review_on" in data and not today < data["review_on"] <= clock.months_after(today, 12):
            raise ValidationError({"review_on": ["Must be after today and at most a year ahead."]})

    @post_load
    def review_by_default(self, data, **kwargs):
        """Three months on, unless a date was chosen."""
        data.setdefault("review_on", clock.months_after(clock.today(), REVIEW_AFTER_MONTHS))
        return data


class PreferencesIn(Schema):
    volunteer_language = Text(validate=validate.Regexp(r"^[a-z]{2}$"))
    volunteer_gender = fields.Str(validate=validate.OneOf(GENDERS))
    pets = Boolean(metadata={"description": "There are pets in the home."})
    smoking = Boolean(metadata={"description": "Someone smokes in the home."})
    access_notes = Text(multiline=True, validate=validate.Length(max=500))


class ConsentIn(Schema):
    share_contact = Boolean(required=True, metadata={
        "description": "The person agrees their contact details go to the volunteer who accepts."})
    sms_contact = Boolean(required=True, metadata={"description": "The person agrees to be contacted by SMS."})


class HelpIn(Schema):
    """What every request for support says, however it arrives: who, what help, when, and their consent."""

    person = fields.Nested(PersonIn, required=True)
    support_type = fields.Str(required=True, validate=validate.OneOf(sorted(KINDS)))
    urgency = fields.Str(load_default="routine", validate=validate.OneOf(URGENCIES))
    when = fields.Nested(WhenIn, required=True)
    repeat = fields.Nested(RepeatIn, load_default=None, allow_none=True)
    preferences = fields.Nested(PreferencesIn, load_default=dict)
    consent = fields.Nested(ConsentIn, required=True)


class RequestIn(HelpIn):
    """A request for support, as a coordinator logs it."""

    coordinator_notes = Text(multiline=True, load_default="", validate=validate.Length(max=4000), metadata={
        "description": "For coordinators only: never sent to volunteers or put on the bus."})
    befriending = fields.Nested(BefriendingIn, load_default=None, allow_none=True, metadata={
        "description": "A befriending request (a companionship or bereavement visit, or a phone check-in), with "
                       "days and a part of the day as its window and no repeat: visited at its rhythm until ended."})

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def befriending_shape(self, data, original, **kwargs):
        """Befriending is companionship or bereavement support, at any of some days, with no end (named with any
        other mistake, e.g. in its review date)."""
        if not (data.get("befriending") or (isinstance(original, dict) and original.get("befriending"))):
            return
        problems = {}
        if "support_type" in data and data["support_type"] not in BEFRIENDING_KINDS:
            problems["support_type"] = [f"Befriending is one of: {', '.join(BEFRIENDING_KINDS)}."]
        if data.get("repeat"):
            problems["repeat"] = ["A befriending request has a rhythm instead: leave repeat out."]
        if "start" in (data.get("when") or {}):
            problems["when"] = ["A befriending request gives days and part_of_day, not a one-off window."]
        if problems:
            raise ValidationError(problems)
    cares_for = fields.UUID(load_default=None, allow_none=True, metadata={
        "description": "For a carer's request: the record of the person they care for (the request is the carer's, "
                       "and their records are linked)."})

    @validates_schema
    def phone_for_a_phone_call(self, data, **kwargs):
        """A phone check-in needs the number the volunteer will call."""
        if data.get("support_type") == "phone_check_in" and not (data.get("person") or {}).get("phone"):
            raise ValidationError({"person": {"phone": ["A phone check-in needs the person's phone number."]}})


class ReferrerIn(Schema):
    organisation = Text(required=True, blank=False, validate=validate.Length(max=200))
    organisation_type = fields.Str(required=True, validate=validate.OneOf(REFERRER_SOURCES))
    name = Text(required=True, blank=False, validate=validate.Length(max=200))
    contact = Text(load_default="", validate=validate.Length(max=200))


class ReferralIn(HelpIn):
    """A referral from PCN staff, a social prescriber, a partner organisation or a health system."""

    referrer = fields.Nested(ReferrerIn, required=True)
    reason = Text(multiline=True, blank=False, required=True, validate=validate.Length(max=4000))
    external_id = Text(load_default=None, allow_none=True, validate=validate.Length(max=64))


class RequestPatch(Schema):
    """What a coordinator may change; only the fields given change."""

    person = fields.Nested(PersonIn(partial=True))
    support_type = fields.Str(validate=validate.OneOf(sorted(KINDS)))
    urgency = fields.Str(validate=validate.OneOf(URGENCIES))
    when = fields.Nested(WhenIn)
    repeat = fields.Nested(RepeatIn, allow_none=True)
    preferences = fields.Nested(PreferencesIn)
    consent = fields.Nested(ConsentIn)
    coordinator_notes = Text(multiline=True, validate=validate.Length(max=4000))


class CancelIn(Schema):
    reason = Text(multiline=True, blank=False, required=True, validate=validate.Length(max=500))


class RequestQuery(Schema):
    status = fields.Str(validate=validate.OneOf(REQUEST_STATUSES))
    support_type = fields.Str(validate=validate.OneOf(sorted(KINDS)))
    urgency = fields.Str(validate=validate.OneOf(URGENCIES))


# --- what goes out ---------------------------------------------------------------------------------------------


class TimelineOut(Schema):
    at = fields.AwareDateTime()
    what = fields.Str()
    detail = fields.Str()
    actor = fields.Str()


class ConsentOut(Schema):
    kind = fields.Str()
    given = fields.Bool()
    recorded_by = fields.Str()
    recorded_at = fields.AwareDateTime()


class RequestOut(Schema):
    """A request as its community's coordinators see it."""

    id = fields.UUID()
    community = fields.Str()
    source = fields.Str()
    status = fields.Str(metadata={"enum": list(REQUEST_STATUSES)})
    outcome = fields.Str()
    person_id = fields.UUID(metadata={"description": "The person's record (GET /people/records/<id>): the same for "
                                                     "every request of theirs."})
    maybe_person_id = fields.UUID(allow_none=True, metadata={
        "description": "Another record that may be the person's (the same phone number, or name and date of "
                       "birth), until a coordinator says whether it is: merge it (POST "
                       "/people/records/<id>/merge) if so."})
    cares_for_id = fields.UUID(allow_none=True, metadata={
        "description": "For a carer's request: the record of the person they care for."})
    person = fields.Method("_person")
    support_type = fields.Str()
    urgency = fields.Str()
    when = fields.Method("_when")
    repeat = fields.Method("_repeat")
    preferences = fields.Method("_preferences")
    befriending = fields.Method("_befriending", metadata={
        "description": "A befriending request's rhythm and first review date; null for any other request."})
    consent = fields.Method("_consent")
    consents = fields.List(fields.Nested(ConsentOut))
    coordinator_notes = fields.Str()
    referrer = fields.Method("_referrer")
    reason = fields.Str(attribute="referral_reason")
    to_check = fields.List(fields.Dict(), metadata={
        "description": "What a coordinator should check (a phone number or postcode that could not be used, a kind "
                       "of help no code maps, a missing consent): field, why, and what was sent."})
    created_by = fields.Str()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    timeline = fields.List(fields.Nested(TimelineOut))

    def _person(self, r: SupportRequest) -> dict:
        """The person, as one object."""
        return {"name": r.person_name, "phone": r.person_phone, "address": r.address, "postcode": r.postcode,
                "area": r.area, "latitude": r.latitude, "longitude": r.longitude,
                "preferred_language": r.preferred_language, "is_carer": r.is_carer,
                "date_of_birth": r.date_of_birth.isoformat() if r.date_of_birth else None}

    def _when(self, r: SupportRequest) -> dict:
        """The window: start and end, or days and a part of the day."""
        if r.window_start:
            return {"start": r.window_start.isoformat(), "end": r.window_end.isoformat()}
        return {"days": r.window_days, "part_of_day": r.window_part}

    def _repeat(self, r: SupportRequest) -> dict | None:
        """How often and how many times, for a recurring request."""
        return {"every_weeks": r.repeat_every_weeks, "occurrences": r.repeat_occurrences} \
            if r.repeat_every_weeks else None

    def _preferences(self, r: SupportRequest) -> dict:
        """The preferences asked for (a befriending request's rhythm is its own field)."""
        return {name: value for name, value in (r.preferences or {}).items() if name != "befriending"}

    def _befriending(self, r: SupportRequest) -> dict | None:
        """Rhythm and review date, for a befriending request."""
        return r.befriending

    def _consent(self, r: SupportRequest) -> dict:
        """The latest answer for each kind of consent."""
        return {kind: r.consent(kind) for kind in CONSENTS}

    def _referrer(self, r: SupportRequest) -> dict | None:
        """Who referred, for a referral."""
        return {"organisation": r.referrer_organisation, "name": r.referrer_name,
                "contact": r.referrer_contact} if r.referrer_organisation else None


class RequestSummaryOut(RequestOut):
    """A request as the board lists it: without its timeline and consent history."""

    class Meta:
        exclude = ("timeline", "consents")


class ReferralOut(Schema):
    """What a referrer sees of their own referral: where it got to, and nothing of the volunteers."""

    id = fields.UUID()
    status = fields.Str(metadata={"enum": list(REQUEST_STATUSES)})
    outcome = fields.Str(metadata={"description": "Why it could not be met, or how it was met."})
    support_type = fields.Str()
    person_name = fields.Str()
    referrer_organisation = fields.Str()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


# --- what happens ------------------------------------------------------------------------------------------------

# The answer to each refusal of the use cases.
STATUS_OF = {NotFound: 404, NotOpen: 409, NotOffered: 409, NotMergeable: 422, NotLinkable: 422, AlreadyDied: 409,
             NotAnAnswer: 422}


def answers_problems(view: Callable) -> Callable:
    """Answer a use case's refusal (a domain error) as problem details with its status."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except IntakeError as err:
            if getattr(err, "field", None):  # the body's field that is wrong, named as a validation error's
                abort(STATUS_OF[type(err)], messages={"json": {err.field: [str(err)]}})
            abort(STATUS_OF[type(err)], message=str(err))

    return wrapper


def created(submitted: idempotency.Created, mimetype: str, location: Callable[[str], str]) -> Response:
    """A create's answer: 201 with the new resource and where it lives (`location(id)`), or the first answer to its
    key again."""
    return idempotency.answer(submitted.body, submitted.status_code, submitted.replayed,
                              location(submitted.body["id"]), mimetype)


# Made once: a schema made for each request costs more than the request's SQL (marshmallow copies every field).
REQUEST_IN, REQUEST_OUT = RequestIn(), RequestOut()


def submit(endpoint: str, data: dict[str, Any], schema: Schema, source: str = "coordinator") -> Response:
    """Create a request once per Idempotency-Key, and answer 201 with it."""
    submitted = service_layer.submit_request(service().uow(), current_actor(), data, service().settings,
                                             source=source, idempotency=idempotency.Idempotency.of_request(endpoint),
                                             render=schema.dump)
    return created(submitted, "application/json",
                   lambda id_: url_for(f"{endpoint}.{'RequestById' if endpoint == 'requests' else 'ReferralById'}",
                                       request_id=id_))


# --- coordinators ------------------------------------------------------------------------------------------------


@blp.route("")
class Requests(MethodView):
    @requires("coordinator", "admin")
    @blp.arguments(REQUEST_IN)
    @blp.response(201, RequestOut)
    @blp.doc(security=BEARER, parameters=[idempotency.PARAMETER])
    @answers_problems
    def post(self, data):
        """Log a request for support; matching is asked to find a volunteer."""
        return submit("requests", data, REQUEST_OUT)

    @requires("coordinator", "admin")
    @blp.arguments(RequestQuery, location="query")
    @blp.response(200, RequestSummaryOut(many=True))
    @blp.paginate()
    @blp.doc(security=BEARER)
    def get(self, query, pagination_parameters):
        """The community's requests: those needing a coordinator first (nobody found, given back by the volunteer,
        offers about to time out, SMS about it waiting in the inbox, urgent with nobody yet), then unmatched and
        urgent, then newest."""
        return service_layer.list_requests(service().uow(), current_actor(), query, pagination_parameters)


@blp.route("/<uuid:request_id>")
class RequestById(MethodView):
    @requires("coordinator", "admin")
    @blp.response(200, RequestOut)
    @blp.doc(security=BEARER)
    @answers_problems
    def get(self, request_id):
        """One request, with its consents and timeline."""
        return service_layer.get_request(service().uow(), current_actor(), request_id)

    @requires("coordinator", "admin")
    @blp.arguments(RequestPatch)
    @blp.response(200, RequestOut)
    @blp.doc(security=BEARER)
    @answers_problems
    def patch(self, data, request_id):
        """Change a request; matching hears of changes that matter to it."""
        return service_layer.update_request(service().uow(), current_actor(), request_id, data, service().settings)


@blp.route("/<uuid:request_id>/cancel")
class CancelRequest(MethodView):
    @requires("coordinator", "admin")
    @blp.arguments(CancelIn)
    @blp.response(200, RequestOut)
    @blp.doc(security=BEARER)
    @answers_problems
    def post(self, data, request_id):
        """Cancel a request; matching withdraws any offers."""
        return service_layer.cancel_request(service().uow(), current_actor(), request_id, data["reason"],
                                            service().settings)


# --- people, across their requests --------------------------------------------------------------------------------

people = Blueprint("people", __name__, url_prefix="/people/records",
                   description="People's records, one per person per community, across their requests (coordinators)")


class PersonRequestOut(Schema):
    """One of the person's requests, as their record lists it."""

    id = fields.UUID()
    status = fields.Str(metadata={"enum": list(REQUEST_STATUSES)})
    outcome = fields.Str()
    support_type = fields.Str()
    source = fields.Str()
    referrer_organisation = fields.Str(allow_none=True)
    consent = fields.Method("_consent")
    created_at = fields.AwareDateTime()

    def _consent(self, r: SupportRequest) -> dict:
        """The latest answer for each kind of consent."""
        return {kind: r.consent(kind) for kind in CONSENTS}


class PersonLinkOut(Schema):
    """Another person's record, named."""

    id = fields.UUID()
    name = fields.Str()


class PersonOut(Schema):
    """A person's record: the details last known, and all their requests, newest first."""

    id = fields.UUID(attribute="person.id")
    community = fields.Str(attribute="person.community")
    name = fields.Str(attribute="person.name")
    phone = fields.Str(attribute="person.phone", allow_none=True)
    date_of_birth = fields.Date(attribute="person.date_of_birth", allow_none=True)
    address = fields.Str(attribute="person.address")
    postcode = fields.Str(attribute="person.postcode", allow_none=True)
    created_at = fields.AwareDateTime(attribute="person.created_at")
    last_activity_at = fields.AwareDateTime(attribute="person.last_activity_at")
    died_on = fields.Date(attribute="person.died_on", allow_none=True)
    monitoring = fields.Dict(attribute="person.monitoring", allow_none=True, metadata={
        "description": "Equity monitoring: their consent and the answers given with it (null: never asked)."})
    requests = fields.List(fields.Nested(PersonRequestOut))
    carers = fields.List(fields.Nested(PersonLinkOut), metadata={"description": "Who cares for them."})
    cares_for = fields.List(fields.Nested(PersonLinkOut), metadata={"description": "Whom they care for."})


class MergeIn(Schema):
    other = fields.UUID(required=True, metadata={
        "description": "Another record of the same person in the community: its requests move to this one, and it "
                       "points here from now on."})


@people.route("/<uuid:person_id>")
class PersonById(MethodView):
    @requires("coordinator", "admin")
    @people.response(200, PersonOut)
    @people.doc(security=BEARER)
    @answers_problems
    def get(self, person_id):
        """A person's record with all their requests (a merged record answers as the one it was merged into)."""
        return service_layer.get_person(service().uow(), current_actor(), person_id)


@people.route("/<uuid:person_id>/merge")
class MergePerson(MethodView):
    @requires("coordinator", "admin")
    @people.arguments(MergeIn)
    @people.response(200, PersonOut)
    @people.doc(security=BEARER)
    @answers_problems
    def post(self, data, person_id):
        """Merge another record of the same person into this one (audited); the other's requests move here."""
        service_layer.merge_people(service().uow(), current_actor(), person_id, data["other"])
        return service_layer.get_person(service().uow(), current_actor(), person_id)


def not_in_the_future(day) -> None:
    """A day that has come."""
    if day > clock.today():
        raise ValidationError("Must not be in the future.")


class DeathIn(Schema):
    died_on = fields.Date(required=True, validate=not_in_the_future, metadata={"description": "The day they died."})


class DeathOut(PersonOut):
    """The record after the death was recorded, with the requests it closed and the bereavement requests made for
    their carers (each waiting for a coordinator to record the carer's consent)."""

    closed = fields.List(fields.UUID(), metadata={"description": "The requests it closed."})
    bereavement_requests = fields.List(fields.UUID(), metadata={
        "description": "A bereavement support request for each carer, held until their consent is recorded."})


@people.route("/<uuid:person_id>/death")
class PersonDeath(MethodView):
    @requires("coordinator", "admin")
    @people.arguments(DeathIn)
    @people.response(200, DeathOut)
    @people.doc(security=BEARER)
    @answers_problems
    def post(self, data, person_id):
        """Record that the person died (once: 409 after): their open requests close, volunteers who helped them are
        told, nothing more is texted about them, and each carer is offered bereavement support."""
        death = service_layer.record_death(service().uow(), current_actor(), person_id, data["died_on"],
                                           service().settings)
        record = service_layer.get_person(service().uow(), current_actor(), person_id)
        return {**{name: getattr(record, name) for name in ("person", "requests", "carers", "cares_for")},
                "closed": [r.id for r in death.closed], "bereavement_requests": [r.id for r in death.offered]}


def answer(options) -> fields.Str:
    """One optional monitoring answer: one of `options`, or "prefer not to say"."""
    return fields.Str(load_default=None, allow_none=True, validate=validate.OneOf([*options, equity.PREFER_NOT]))


class MonitoringIn(Schema):
    """Equity monitoring, asked only with the person's consent; every answer optional, each may be
    "prefer_not_to_say". Without consent the answers are not kept (and metrics forgets any it had)."""

    consent = Boolean(required=True, metadata={"description": "The person consents to equity monitoring "
                                                              "(separately from any consent to SMS)."})
    age_band = answer(equity.AGE_BANDS)
    sex = answer(equity.SEXES)
    ethnicity = answer(sorted({code for country in equity.ETHNICITIES.values() for code in country}))
    first_language = answer(equity.FIRST_LANGUAGES)
    disability = answer(equity.DISABILITY)


@people.route("/<uuid:person_id>/monitoring")
class PersonMonitoring(MethodView):
    @requires("coordinator", "admin")
    @people.arguments(MonitoringIn)
    @people.response(200, PersonOut)
    @people.doc(security=BEARER)
    @answers_problems
    def put(self, data, person_id):
        """Record the person's consent to equity monitoring and their answers (the ethnicity categories are their
        community's country's: ONS 2021 for Great Britain, Ontario's Anti-Racism Data Standards for Canada); the
        age band comes from their date of birth when it is known. Metrics is told bands, groups and the
        deprivation decile of their postcode, never the postcode."""
        answers = {name: data[name] for name in MONITORING_ANSWERS}
        service_layer.record_monitoring(service().uow(), current_actor(), person_id, data["consent"], answers,
                                        service().settings)
        return service_layer.get_person(service().uow(), current_actor(), person_id)


class CarerIn(Schema):
    carer = fields.UUID(required=True, metadata={
        "description": "Another record of the community: someone who cares for this person (their record may have "
                       "requests of its own)."})


@people.route("/<uuid:person_id>/carers")
class PersonCarers(MethodView):
    @requires("coordinator", "admin")
    @people.arguments(CarerIn)
    @people.response(200, PersonOut)
    @people.doc(security=BEARER)
    @answers_problems
    def post(self, data, person_id):
        """Record that someone cares for this person (audited; linking them again changes nothing)."""
        service_layer.link_carer(service().uow(), current_actor(), person_id, data["carer"])
        return service_layer.get_person(service().uow(), current_actor(), person_id)


@people.route("/<uuid:person_id>/carers/<uuid:carer_id>")
class PersonCarer(MethodView):
    @requires("coordinator", "admin")
    @people.response(204)
    @people.doc(security=BEARER)
    @answers_problems
    def delete(self, person_id, carer_id):
        """Forget that someone cares for this person (audited)."""
        service_layer.unlink_carer(service().uow(), current_actor(), person_id, carer_id)
        return None


# --- referrers ---------------------------------------------------------------------------------------------------


@referrals.route("")
class Referrals(MethodView):
    @requires("referrer", "coordinator", "admin")
    @referrals.arguments(ReferralIn)
    @referrals.response(201, ReferralOut)
    @referrals.doc(security=BEARER, parameters=[idempotency.PARAMETER])
    @answers_problems
    def post(self, data):
        """Refer someone for support."""
        return submit("referrals", data, ReferralOut(), source=data["referrer"]["organisation_type"])

    @requires("referrer", "coordinator", "admin")
    @referrals.response(200, ReferralOut(many=True))
    @referrals.paginate()
    @referrals.doc(security=BEARER)
    def get(self, pagination_parameters):
        """The referrals you made, newest first, with their outcomes."""
        return service_layer.list_referrals(service().uow(), current_actor(), pagination_parameters)


@referrals.route("/<uuid:request_id>")
class ReferralById(MethodView):
    @requires("referrer", "coordinator", "admin")
    @referrals.response(200, ReferralOut)
    @referrals.doc(security=BEARER)
    @answers_problems
    def get(self, request_id):
        """The outcome of one of your referrals."""
        return service_layer.get_referral(service().uow(), current_actor(), request_id)


# --- health systems (FHIR) ---------------------------------------------------------------------------------------

FHIR_CONSENT = ConsentIn(partial=True)


class FhirReferralIn(ReferralIn):
    """A referral read from a FHIR ServiceRequest: consent may be missing (a coordinator confirms it), and what the
    coordinator is to check comes with it."""

    consent = fields.Nested(FHIR_CONSENT, load_default=dict)
    reason = Text(multiline=True, load_default="", validate=validate.Length(max=4000))
    to_check = fields.List(fields.Dict(), load_default=list)


FHIR_REFERRAL_IN = FhirReferralIn()
# A field of the person that cannot be used is kept aside for the coordinator (never a refusal): what it becomes
# meanwhile (None: left out).
SET_ASIDE = {"phone": None, "postcode": None, "latitude": None, "longitude": None, "date_of_birth": None,
             "preferred_language": None, "name": "Name not given", "address": None}


def fhir_error(status: int, issues: list[dict]) -> Response:
    """An OperationOutcome answer."""
    response = jsonify(fhir.operation_outcome(issues))
    response.status_code = status
    response.mimetype = FHIR_JSON
    return response


def fhir_path(pointer: str, root: str = "ServiceRequest") -> str:
    """The FHIRPath of a JSON pointer into a resource: /contained/0/name -> ServiceRequest.contained[0].name."""
    parts = [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]
    return root + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in parts)


def fhir_referral(resource: dict[str, Any], actor) -> dict[str, Any]:
    """A ServiceRequest as a loaded referral, what cannot be used of the person set aside and flagged; raises
    FhirProblem naming, in the resource, each thing wrong."""
    community = communities.get(actor.community)
    referral = fhir.to_referral(resource, now=clock.utcnow(), zone=community.zone,
                                extra_codes=community.referral_codes)
    referrer = referral["referrer"]
    referrer.setdefault("organisation", actor.organisation or referrer.get("name") or actor.subject)
    referrer.setdefault("name", referrer["organisation"])
    referral.setdefault("reason", "")
    errors: list[dict[str, str]] = []
    for _ in range(3):  # as sent; then with what could not be used set aside (the place is checked last)
        try:
            return FHIR_REFERRAL_IN.load(referral)
        except ValidationError as err:
            errors = field_errors(err.messages)
        person_errors = [e for e in errors if e["field"].split(".")[0] == "person"]
        if len(person_errors) < len(errors) or not person_errors:
            break
        referral = set_aside(referral, person_errors, community.centre)
    raise fhir.FhirProblem([{"severity": "error", "code": "invalid", "diagnostics": f"{e['field']}: {e['detail']}",
                             "expression": [fhir.expression_for(e["field"], resource)]} for e in errors])


def set_aside(referral: dict[str, Any], errors: list[dict[str, str]], centre: tuple) -> dict[str, Any]:
    """The referral with each person field named in `errors` set aside and flagged for the coordinator (a place
    that cannot be found: at the community's centre until they place it)."""
    person = dict(referral["person"])
    flags = list(referral["to_check"])
    names = {e["field"].split(".")[1] if "." in e["field"] else "postcode" for e in errors}
    names = {name if name in SET_ASIDE else "postcode" for name in names}
    if names & {"postcode", "latitude", "longitude"}:
        names |= {"postcode", "latitude", "longitude"}
    for name in sorted(names):
        value = person.pop(name, None)
        if SET_ASIDE[name] is not None:
            person[name] = SET_ASIDE[name]
        if name in ("latitude", "longitude") or (value is None and name not in ("postcode", "name")):
            continue
        what = {"phone": "Phone number", "postcode": "Postcode", "date_of_birth": "Date of birth",
                "preferred_language": "Language", "name": "Name", "address": "Address"}[name]
        if value is None:
            why = f"No {what.lower()} was sent: ask the referrer" + (
                ", and place the person before volunteers are asked." if name == "postcode" else ".")
        else:
            detail = next((e["detail"] for e in errors if e["field"] == f"person.{name}"), "")
            why = f"{what} {value!r} could not be used ({detail.rstrip('.')}): check it with the referrer."
        flags.append(fhir.flag(f"person.{name}", why, value))
    if "postcode" in names:
        person["latitude"], person["longitude"] = centre
    return {**referral, "person": person, "to_check": flags}


def fhir_json(resource: dict[str, Any], status: int = 200) -> Response:
    """A FHIR resource as the answer."""
    return Response(json.dumps(resource), status=status, mimetype=FHIR_JSON)


def fhir_body(expected: str) -> dict[str, Any] | Response:
    """The request's FHIR JSON object, or the OperationOutcome answer that refuses it."""
    if not is_json(request.mimetype):
        return fhir_error(415, [{"severity": "error", "code": "structure", "expression": [expected],
                                 "diagnostics": f"Send the resource as {FHIR_JSON}, not "
                                                f"{request.mimetype or 'untyped'}."}])
    resource = request.get_json(silent=True)
    if not isinstance(resource, dict):
        return fhir_error(400, [{"severity": "error", "code": "structure",
                                 "diagnostics": "The body is not a JSON object.", "expression": [expected]}])
    bad_text = unstorable(resource)
    if bad_text:
        root = "Bundle" if resource.get("resourceType") == "Bundle" else expected
        return fhir_error(422, [{"severity": "error", "code": "invalid", "diagnostics": why,
                                 "expression": [fhir_path(pointer, root)]} for pointer, why in bad_text])
    return resource


def refer(document: dict[str, Any], endpoint: str) -> Response:
    """Take a ServiceRequest, or a transaction Bundle holding one, as a referral: 201 with the stored
    ServiceRequest, or 200 with the transaction-response Bundle; 422 with an OperationOutcome naming each problem."""
    bundle = document.get("resourceType") == "Bundle"
    try:
        resource = fhir.from_bundle(document)[0] if bundle else document
        data = fhir_referral(resource, current_actor())
    except fhir.FhirProblem as problem:
        return fhir_error(422, problem.issues)

    def render(r: SupportRequest) -> dict[str, Any]:
        stored = fhir.stored_resource(resource, str(r.id), r.status)
        return fhir.transaction_response(document, stored, str(r.id)) if bundle else stored

    submitted = service_layer.submit_request(
        service().uow(), current_actor(), data, service().settings, source="health_system",
        idempotency=idempotency.Idempotency.of_request(endpoint), document=document, render=render,
        status_code=200 if bundle else 201)
    return created(submitted, FHIR_JSON, lambda id_: f"/fhir/ServiceRequest/{id_}")


FHIR_POST_ANSWERS = {
    "400": fhir_answer("The body is not a JSON object (or the Idempotency-Key is too long)", problem=True),
    "409": fhir_answer("A request with this Idempotency-Key is still being made", problem=True),
    "415": fhir_answer("The body is not FHIR JSON"),
    "422": fhir_answer("An OperationOutcome naming each problem (or problem details: the Idempotency-Key came "
                       "before with another body)", problem=True)}
FHIR_BODY = {"required": True, "content": {FHIR_JSON: {"schema": {"type": "object"}},
                                           "application/json": {"schema": {"type": "object"}}}}


@fhir_blp.route("")
class FhirBase(MethodView):
    @requires("referrer", "coordinator", "admin")
    @fhir_blp.doc(security=BEARER, parameters=[idempotency.PARAMETER], requestBody=FHIR_BODY, responses={
        "200": fhir_answer("The transaction-response Bundle: the ServiceRequest created", RESOURCE),
        **FHIR_POST_ANSWERS})
    @answers_problems
    @checks_own_text
    def post(self):
        """Accept a transaction Bundle holding a ServiceRequest (and its Patient, requester and Consent)."""
        document = fhir_body("Bundle")
        if isinstance(document, Response):
            return document
        if document.get("resourceType") != "Bundle":
            return fhir_error(422, [fhir.issue("not-supported", "POST a transaction Bundle to the base, or a "
                                               "ServiceRequest to /fhir/ServiceRequest.", "Bundle")])
        return refer(document, "fhir-bundle")


@fhir_blp.route("/metadata")
class FhirMetadata(MethodView):
    @fhir_blp.doc(responses={"200": fhir_answer("The CapabilityStatement (open, as FHIR servers publish it)",
                                                RESOURCE)})
    def get(self):
        """What this server does with FHIR R4: referrals in, Tasks out."""
        return fhir_json(fhir.capability_statement(request.url_root.rstrip("/") + "/fhir"))


@fhir_blp.route("/ServiceRequest")
class FhirServiceRequests(MethodView):
    @requires("referrer", "coordinator", "admin")
    @fhir_blp.doc(security=BEARER, parameters=[idempotency.PARAMETER], requestBody=FHIR_BODY, responses={
        "201": fhir_answer("The stored ServiceRequest", RESOURCE), **FHIR_POST_ANSWERS})
    @answers_problems
    @checks_own_text
    def post(self):
        """Accept an HL7 FHIR R4 ServiceRequest as a referral."""
        document = fhir_body("ServiceRequest")
        if isinstance(document, Response):
            return document
        return refer(document, "fhir")


def not_found(kind: str, err: Exception) -> Response:
    """The OperationOutcome of a read that finds nothing of the reader's."""
    return fhir_error(404, [{"severity": "error", "code": "not-found", "diagnostics": str(err), "expression": [kind]}])


@fhir_blp.route("/ServiceRequest/<uuid:request_id>")
class FhirServiceRequestById(MethodView):
    @requires("referrer", "coordinator", "admin")
    @fhir_blp.doc(security=BEARER, responses={"200": fhir_answer("The ServiceRequest, with its status now", RESOURCE),
                                              "404": fhir_answer("No such ServiceRequest of yours", problem=True)})
    def get(self, request_id):
        """A ServiceRequest you sent, with its status as it stands now."""
        try:
            r = service_layer.get_service_request(service().uow(), current_actor(), request_id)
        except NotFound as err:
            return not_found("ServiceRequest", err)
        return fhir_json(fhir.stored_resource(fhir.service_request_of(r.source_document), str(r.id), r.status))


class TaskQuery(Schema):
    focus = fields.Str(required=True, validate=validate.Regexp(
        r"^(.*/)?ServiceRequest/[0-9a-fA-F-]{36}$", error="Give focus=ServiceRequest/<id>."), metadata={
        "description": "ServiceRequest/<id>: the Task of that referral."})


@fhir_blp.route("/Task/<uuid:request_id>")
class FhirTaskById(MethodView):
    @requires("referrer", "coordinator", "admin")
    @fhir_blp.doc(security=BEARER, responses={"200": fhir_answer("The referral's Task, as it stands now", RESOURCE),
                                              "404": fhir_answer("No such Task of yours", problem=True)})
    def get(self, request_id):
        """The Task that follows a ServiceRequest you sent: accepted, in progress, completed, or why not."""
        try:
            r = service_layer.get_service_request(service().uow(), current_actor(), request_id)
        except NotFound:
            return not_found("Task", NotFound("No such Task."))
        return fhir_json(fhir.task(r))


@fhir_blp.route("/Task")
class FhirTasks(MethodView):
    @requires("referrer", "coordinator", "admin")
    @fhir_blp.arguments(TaskQuery, location="query")
    @fhir_blp.doc(security=BEARER, responses={"200": fhir_answer("A searchset Bundle: the Task of that "
                                                                 "ServiceRequest, or none", RESOURCE)})
    def get(self, query):
        """The Task whose focus is one of your ServiceRequests (`?focus=ServiceRequest/<id>`)."""
        found = []
        try:
            request_id = uuid.UUID(query["focus"].rsplit("/", 1)[1])
            found = [fhir.task(service_layer.get_service_request(service().uow(), current_actor(), request_id))]
        except (ValueError, NotFound):
            pass
        return fhir_json(fhir.searchset(found, request.url_root.rstrip("/") + "/fhir"))
