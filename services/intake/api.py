"""Intake's HTTP API: requests logged by coordinators, referrals from PCN staff, social prescribers and partner
organisations, and FHIR ServiceRequests from health systems."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import sqlalchemy as sa
from flask import Response, g, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.intake.model import (CONSENTS, OPEN_STATUSES, SOURCES, STATUSES, URGENCIES, AuditEntry, Consent,
                                   IdempotencyKey, SupportRequest, outbox)
from shared import gazetteer
from shared.contracts import DAYS, PARTS_OF_DAY
from shared.taxonomy import KINDS
from shared.web import PhoneNumber, create_service_app, requires, service

blp = Blueprint("requests", __name__, url_prefix="/requests", description="Requests for support (coordinators)")
referrals = Blueprint("referrals", __name__, url_prefix="/referrals",
                      description="Referrals from PCN staff, social prescribers and partner organisations")
fhir_blp = Blueprint("fhir", __name__, url_prefix="/fhir", description="HL7 FHIR R4 ServiceRequest referrals")
BEARER = [{"bearerAuth": []}]

# --- what comes in ---------------------------------------------------------------------------------------------


def known_postcode(value: str) -> None:
    """A postcode the gazetteer knows, checked with the other fields so every bad field is named at once."""
    try:
        gazetteer.locate(value)
    except gazetteer.UnknownPostcode as err:
        raise ValidationError(str(err)) from err


class PersonIn(Schema):
    """The person who needs support."""

    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    phone = PhoneNumber(load_default=None, allow_none=True)
    address = fields.Str(load_default="", validate=validate.Length(max=500))
    postcode = fields.Str(validate=[validate.Length(max=10), known_postcode])
    latitude = fields.Float(validate=validate.Range(-90, 90))
    longitude = fields.Float(validate=validate.Range(-180, 180))
    preferred_language = fields.Str(load_default="en", validate=validate.Regexp(r"^[a-z]{2}$"))
    date_of_birth = fields.Date(load_default=None, allow_none=True)
    is_carer = fields.Bool(load_default=False, metadata={"description": "The person is an unpaid carer."})

    @validates_schema
    def check_place(self, data, partial=False, **kwargs):
        """A postcode we know, or both coordinates."""
        if partial:
            return
        if "postcode" in data:
            try:
                place = gazetteer.locate(data["postcode"])
            except gazetteer.UnknownPostcode as err:
                raise ValidationError({"postcode": [str(err)]}) from err
            data["area"] = place.district
            data.setdefault("latitude", place.latitude)
            data.setdefault("longitude", place.longitude)
        elif "latitude" not in data or "longitude" not in data:
            raise ValidationError({name: ["Give a postcode, or both latitude and longitude."]
                                   for name in ("postcode", "latitude", "longitude") if name not in data})


class WhenIn(Schema):
    """A one-off window (start and end), or days and a part of the day ("any weekday afternoon")."""

    start = fields.AwareDateTime()
    end = fields.AwareDateTime()
    days = fields.List(fields.Str(validate=validate.OneOf(DAYS)), validate=validate.Length(min=1))
    part_of_day = fields.Str(validate=validate.OneOf(PARTS_OF_DAY))

    @validates_schema
    def check_shape(self, data, **kwargs):
        """Either start and end, or days and part_of_day; an end after its start."""
        one_off, flexible = ("start" in data or "end" in data), ("days" in data or "part_of_day" in data)
        if one_off == flexible:
            raise ValidationError("Give start and end, or days and part_of_day.")
        needed = ("start", "end") if one_off else ("days", "part_of_day")
        missing = {name: ["Missing data for required field."] for name in needed if name not in data}
        if missing:
            raise ValidationError(missing)
        if one_off and data["end"] <= data["start"]:
            raise ValidationError({"end": ["Must be after start."]})


class RepeatIn(Schema):
    """A recurring task, e.g. weekly shopping for six weeks."""

    every_weeks = fields.Int(required=True, validate=validate.Range(min=1, max=8))
    occurrences = fields.Int(required=True, validate=validate.Range(min=2, max=52))


class PreferencesIn(Schema):
    volunteer_language = fields.Str(validate=validate.Regexp(r"^[a-z]{2}$"))
    volunteer_gender = fields.Str(validate=validate.OneOf(["female", "male", "non-binary"]))
    pets = fields.Bool(metadata={"description": "There are pets in the home."})
    smoking = fields.Bool(metadata={"description": "Someone smokes in the home."})
    access_notes = fields.Str(validate=validate.Length(max=500))


class ConsentIn(Schema):
    share_contact = fields.Bool(required=True, metadata={
        "description": "The person agrees their contact details go to the volunteer who accepts."})
    sms_contact = fields.Bool(required=True, metadata={"description": "The person agrees to be contacted by SMS."})


class RequestIn(Schema):
    """A request for support, as a coordinator logs it."""

    person = fields.Nested(PersonIn, required=True)
    support_type = fields.Str(required=True, validate=validate.OneOf(sorted(KINDS)))
    urgency = fields.Str(load_default="routine", validate=validate.OneOf(URGENCIES))
    when = fields.Nested(WhenIn, required=True)
    repeat = fields.Nested(RepeatIn, load_default=None, allow_none=True)
    preferences = fields.Nested(PreferencesIn, load_default=dict)
    consent = fields.Nested(ConsentIn, required=True)
    coordinator_notes = fields.Str(load_default="", validate=validate.Length(max=4000), metadata={
        "description": "For coordinators only: never sent to volunteers or put on the bus."})


class ReferrerIn(Schema):
    organisation = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    organisation_type = fields.Str(required=True, validate=validate.OneOf(SOURCES[1:]))
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    contact = fields.Str(load_default="", validate=validate.Length(max=200))


class ReferralIn(Schema):
    """A referral from PCN staff, a social prescriber, a partner organisation or a health system."""

    person = fields.Nested(PersonIn, required=True)
    support_type = fields.Str(required=True, validate=validate.OneOf(sorted(KINDS)))
    urgency = fields.Str(load_default="routine", validate=validate.OneOf(URGENCIES))
    when = fields.Nested(WhenIn, required=True)
    repeat = fields.Nested(RepeatIn, load_default=None, allow_none=True)
    preferences = fields.Nested(PreferencesIn, load_default=dict)
    consent = fields.Nested(ConsentIn, required=True)
    referrer = fields.Nested(ReferrerIn, required=True)
    reason = fields.Str(required=True, validate=validate.Length(min=1, max=4000))
    external_id = fields.Str(load_default=None, allow_none=True, validate=validate.Length(max=64))


class RequestPatch(Schema):
    """What a coordinator may change; only the fields given change."""

    person = fields.Nested(PersonIn(partial=True))
    support_type = fields.Str(validate=validate.OneOf(sorted(KINDS)))
    urgency = fields.Str(validate=validate.OneOf(URGENCIES))
    when = fields.Nested(WhenIn)
    repeat = fields.Nested(RepeatIn, allow_none=True)
    preferences = fields.Nested(PreferencesIn)
    consent = fields.Nested(ConsentIn)
    coordinator_notes = fields.Str(validate=validate.Length(max=4000))


class CancelIn(Schema):
    reason = fields.Str(required=True, validate=validate.Length(min=1, max=500))


class RequestQuery(Schema):
    status = fields.Str(validate=validate.OneOf(STATUSES))
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
    status = fields.Str(metadata={"enum": list(STATUSES)})
    outcome = fields.Str()
    person = fields.Method("_person")
    support_type = fields.Str()
    urgency = fields.Str()
    when = fields.Method("_when")
    repeat = fields.Method("_repeat")
    preferences = fields.Dict()
    consent = fields.Method("_consent")
    consents = fields.List(fields.Nested(ConsentOut))
    coordinator_notes = fields.Str()
    referrer = fields.Method("_referrer")
    reason = fields.Str(attribute="referral_reason")
    created_by = fields.Str()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    timeline = fields.List(fields.Nested(TimelineOut))

    def _person(self, r: SupportRequest) -> dict:
        return {"name": r.person_name, "phone": r.person_phone, "address": r.address, "postcode": r.postcode,
                "area": r.area, "latitude": r.latitude, "longitude": r.longitude,
                "preferred_language": r.preferred_language, "is_carer": r.is_carer,
                "date_of_birth": r.date_of_birth.isoformat() if r.date_of_birth else None}

    def _when(self, r: SupportRequest) -> dict:
        if r.window_start:
            return {"start": r.window_start.isoformat(), "end": r.window_end.isoformat()}
        return {"days": r.window_days, "part_of_day": r.window_part}

    def _repeat(self, r: SupportRequest) -> dict | None:
        return {"every_weeks": r.repeat_every_weeks, "occurrences": r.repeat_occurrences} \
            if r.repeat_every_weeks else None

    def _consent(self, r: SupportRequest) -> dict:
        return {kind: r.consent(kind) for kind in CONSENTS}

    def _referrer(self, r: SupportRequest) -> dict | None:
        return {"organisation": r.referrer_organisation, "name": r.referrer_name,
                "contact": r.referrer_contact} if r.referrer_organisation else None


class RequestSummaryOut(RequestOut):
    """A request as the board lists it: without its timeline and consent history."""

    class Meta:
        exclude = ("timeline", "consents")


class ReferralOut(Schema):
    """What a referrer sees of their own referral: where it got to, and nothing of the volunteers."""

    id = fields.UUID()
    status = fields.Str(metadata={"enum": list(STATUSES)})
    outcome = fields.Str(metadata={"description": "Why it could not be met, or how it was met."})
    support_type = fields.Str()
    person_name = fields.Str()
    referrer_organisation = fields.Str()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


# --- what happens ------------------------------------------------------------------------------------------------

MATCHING_FIELDS = ("support_type", "urgency", "latitude", "longitude", "area", "window_start", "window_end",
                   "window_days", "window_part", "repeat_every_weeks", "repeat_occurrences", "preferences")


def person_ref(name: str, phone: str | None, date_of_birth) -> str:
    """A pseudonym for the person, so metrics can count people without knowing who they are."""
    key = service().settings.secret_key.encode()
    seed = "|".join([" ".join(name.lower().split()), phone or "", str(date_of_birth or "")])
    return "p_" + hmac.new(key, seed.encode(), hashlib.sha256).hexdigest()[:16]


def columns_from(data: dict[str, Any]) -> dict[str, Any]:
    """Request columns from loaded (possibly partial) input."""
    columns: dict[str, Any] = {}
    if person := data.get("person"):
        renames = {"name": "person_name", "phone": "person_phone"}
        columns.update({renames.get(k, k): v for k, v in person.items()})
    if "when" in data:
        when = data["when"]
        columns.update(window_start=when.get("start"), window_end=when.get("end"), window_days=when.get("days"),
                       window_part=when.get("part_of_day"))
    if "repeat" in data:
        repeat = data["repeat"] or {}
        columns.update(repeat_every_weeks=repeat.get("every_weeks"), repeat_occurrences=repeat.get("occurrences", 1))
    for name in ("support_type", "urgency", "preferences", "coordinator_notes"):
        if name in data:
            columns[name] = data[name]
    if referrer := data.get("referrer"):
        columns.update(referrer_organisation=referrer["organisation"], referrer_name=referrer["name"],
                       referrer_contact=referrer["contact"], source=referrer["organisation_type"])
    if "reason" in data:
        columns["referral_reason"] = data["reason"]
    if data.get("external_id"):
        columns["external_id"] = data["external_id"]
    return columns


def matching_snapshot(r: SupportRequest) -> dict[str, Any]:
    """What matching needs to know of a request: no name, phone, address, notes or reason."""
    preferences = r.preferences or {}
    return {
        "request_id": r.id, "community": r.community, "source": r.source, "support_type": r.support_type,
        "urgency": r.urgency, "latitude": r.latitude, "longitude": r.longitude, "area": r.area,
        "window_start": r.window_start, "window_end": r.window_end, "window_days": r.window_days,
        "window_part": r.window_part, "repeat_every_weeks": r.repeat_every_weeks,
        "repeat_occurrences": r.repeat_occurrences, "volunteer_language": preferences.get("volunteer_language"),
        "volunteer_gender": preferences.get("volunteer_gender"),
        "person_ref": person_ref(r.person_name, r.person_phone, r.date_of_birth), "is_carer": r.is_carer,
        "referrer_organisation": r.referrer_organisation,
    }


def audit(session: Session, action: str, request_id: uuid.UUID | None, fields_touched=()) -> None:
    """Record who touched a person's details."""
    session.add(AuditEntry(actor=g.user["sub"], role=g.user["role"], action=action, request_id=request_id,
                           fields=sorted(fields_touched)))


def record_consents(session: Session, r: SupportRequest, consent: dict[str, bool]) -> None:
    """Record each consent answer, with who recorded it and when."""
    for kind in CONSENTS:
        if kind in consent and (not r.consents or r.consent(kind) != consent[kind]):
            r.consents.append(Consent(kind=kind, given=consent[kind], recorded_by=g.user["sub"]))


def submit(session: Session, data: dict[str, Any], source: str = "coordinator") -> SupportRequest:
    """Store a new request with its consents, timeline, audit entry and `request.submitted` event."""
    columns = columns_from(data)
    columns.setdefault("source", source)
    r = SupportRequest(community=g.user["communities"][0], created_by=g.user["sub"], **columns)
    session.add(r)
    record_consents(session, r, data["consent"])
    via = f" (referred by {r.referrer_organisation})" if r.referrer_organisation else ""
    r.note("submitted", f"{KINDS[r.support_type].label}, {r.urgency}{via}", g.user["sub"])
    session.flush()
    audit(session, "create", r.id, columns)
    outbox.add(session, "request.submitted", matching_snapshot(r), correlation_id=str(r.id))
    return r


def cancel(session: Session, r: SupportRequest, reason: str) -> bool:
    """Cancel an open request and tell matching; False if it was already completed or cancelled."""
    if not r.advance("cancelled"):
        return False
    r.outcome = reason
    r.note("cancelled", reason, g.user["sub"])
    audit(session, "cancel", r.id, ["status"])
    outbox.add(session, "request.cancelled", {"request_id": r.id, "reason": reason}, correlation_id=str(r.id))
    return True


def body_hash() -> str:
    """A digest of the request body, to tell a retry from a different request under the same key."""
    return hashlib.sha256(request.get_data()).hexdigest()


def replay(session: Session, endpoint: str) -> Response | None:
    """The first answer for this Idempotency-Key, if there was one; 422 if the key came with another body."""
    key = request.headers.get("Idempotency-Key")
    if not key:
        return None
    if len(key) > 200:
        abort(400, message="Idempotency-Key must be at most 200 characters.")
    seen = session.get(IdempotencyKey, (g.user["sub"], key))
    if seen is None:
        return None
    if seen.endpoint != endpoint or seen.body_hash != body_hash():
        abort(422, message="This Idempotency-Key was used with a different request body.")
    response = jsonify(seen.response)
    response.status_code = seen.status_code
    response.mimetype = "application/fhir+json" if endpoint.startswith("fhir") else "application/json"
    response.headers["Idempotent-Replayed"] = "true"
    return response


def remember(session: Session, endpoint: str, status: int, body: dict[str, Any]) -> None:
    """Keep the answer to a create made with an Idempotency-Key, in the create's own transaction."""
    key = request.headers.get("Idempotency-Key")
    if key:
        session.add(IdempotencyKey(subject=g.user["sub"], key=key, endpoint=endpoint, body_hash=body_hash(),
                                   status_code=status, response=json.loads(json.dumps(body, default=str))))


def created(endpoint: str, data: dict[str, Any], schema: Schema, source: str = "coordinator") -> Response:
    """Create a request once per Idempotency-Key, and answer 201 with it."""
    try:
        with service().sessions.begin() as session:
            if (earlier := replay(session, endpoint)) is not None:
                return earlier
            r = submit(session, data, source)
            body = schema.dump(r)
            remember(session, endpoint, 201, body)
    except IntegrityError:
        abort(409, message="A request with this Idempotency-Key is being made; retry it.")
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for(f"{endpoint}.{'RequestById' if endpoint == 'requests' else 'ReferralById'}",
                                           request_id=r.id)
    return response


def find(session: Session, request_id: uuid.UUID) -> SupportRequest:
    """A request in one of the caller's communities (a referrer: one they made), or 404."""
    r = session.get(SupportRequest, request_id)
    if r is None or r.community not in g.user["communities"] or (
            g.user["role"] == "referrer" and r.created_by != g.user["sub"]):
        abort(404, message="No such request.")
    return r


# --- coordinators ------------------------------------------------------------------------------------------------


@blp.route("")
class Requests(MethodView):
    @requires("coordinator", "admin")
    @blp.arguments(RequestIn)
    @blp.response(201, RequestOut)
    @blp.doc(security=BEARER, parameters=[{"in": "header", "name": "Idempotency-Key", "schema": {"type": "string"}}])
    def post(self, data):
        """Log a request for support; matching is asked to find a volunteer."""
        return created("requests", data, RequestOut())

    @requires("coordinator", "admin")
    @blp.arguments(RequestQuery, location="query")
    @blp.response(200, RequestSummaryOut(many=True))
    @blp.paginate()
    @blp.doc(security=BEARER)
    def get(self, query, pagination_parameters):
        """The community's requests: unmatched and urgent first, then newest."""
        where = [SupportRequest.community.in_(g.user["communities"])]
        where += [getattr(SupportRequest, name) == value for name, value in query.items()]
        with service().sessions.begin() as session:
            pagination_parameters.item_count = session.scalar(
                sa.select(sa.func.count()).select_from(SupportRequest).where(*where))
            rows = session.scalars(board_order(sa.select(SupportRequest).where(*where))
                                   .offset(pagination_parameters.first_item)
                                   .limit(pagination_parameters.page_size)).all()
            audit(session, "list", None, ["person_name", "area"])
            return rows


def board_order(query):
    """Unmatched first, then by urgency, then newest."""
    return query.order_by(
        sa.case((SupportRequest.status == "unmatched", 0), else_=1),
        sa.case({"urgent": 0, "soon": 1}, value=SupportRequest.urgency, else_=2),
        SupportRequest.created_at.desc())


@blp.route("/<uuid:request_id>")
class RequestById(MethodView):
    @requires("coordinator", "admin")
    @blp.response(200, RequestOut)
    @blp.doc(security=BEARER)
    def get(self, request_id):
        """One request, with its consents and timeline."""
        with service().sessions.begin() as session:
            r = find(session, request_id)
            audit(session, "view", r.id)
            return r

    @requires("coordinator", "admin")
    @blp.arguments(RequestPatch)
    @blp.response(200, RequestOut)
    @blp.doc(security=BEARER)
    def patch(self, data, request_id):
        """Change a request; matching hears of changes that matter to it."""
        with service().sessions.begin() as session:
            r = find(session, request_id)
            if r.status not in OPEN_STATUSES:
                abort(409, message=f"A {r.status} request cannot be changed.")
            if "postcode" in data.get("person", {}):
                try:
                    PersonIn().check_place(data["person"])
                except ValidationError as err:
                    abort(422, errors={"json": {"person": err.messages}})
            columns = columns_from(data)
            changed = sorted(name for name, value in columns.items() if getattr(r, name) != value)
            for name in changed:
                setattr(r, name, columns[name])
            if "consent" in data:
                record_consents(session, r, data["consent"])
                changed.append("consent")
            if changed:
                r.note("edited", ", ".join(changed), g.user["sub"])
                audit(session, "update", r.id, changed)
            if any(name in MATCHING_FIELDS for name in changed):
                outbox.add(session, "request.updated", matching_snapshot(r), correlation_id=str(r.id))
            return r


@blp.route("/<uuid:request_id>/cancel")
class CancelRequest(MethodView):
    @requires("coordinator", "admin")
    @blp.arguments(CancelIn)
    @blp.response(200, RequestOut)
    @blp.doc(security=BEARER)
    def post(self, data, request_id):
        """Cancel a request; matching withdraws any offers."""
        with service().sessions.begin() as session:
            r = find(session, request_id)
            if not cancel(session, r, data["reason"]):
                abort(409, message=f"A {r.status} request cannot be cancelled.")
            return r


# --- referrers ---------------------------------------------------------------------------------------------------


@referrals.route("")
class Referrals(MethodView):
    @requires("referrer", "coordinator", "admin")
    @referrals.arguments(ReferralIn)
    @referrals.response(201, ReferralOut)
    @referrals.doc(security=BEARER,
                   parameters=[{"in": "header", "name": "Idempotency-Key", "schema": {"type": "string"}}])
    def post(self, data):
        """Refer someone for support."""
        return created("referrals", data, ReferralOut(), source=data["referrer"]["organisation_type"])

    @requires("referrer", "coordinator", "admin")
    @referrals.response(200, ReferralOut(many=True))
    @referrals.paginate()
    @referrals.doc(security=BEARER)
    def get(self, pagination_parameters):
        """The referrals you made, newest first, with their outcomes."""
        where = [SupportRequest.created_by == g.user["sub"], SupportRequest.referrer_organisation.is_not(None)]
        with service().sessions() as session:
            pagination_parameters.item_count = session.scalar(
                sa.select(sa.func.count()).select_from(SupportRequest).where(*where))
            return session.scalars(sa.select(SupportRequest).where(*where)
                                   .order_by(SupportRequest.created_at.desc())
                                   .offset(pagination_parameters.first_item)
                                   .limit(pagination_parameters.page_size)).all()


@referrals.route("/<uuid:request_id>")
class ReferralById(MethodView):
    @requires("referrer", "coordinator", "admin")
    @referrals.response(200, ReferralOut)
    @referrals.doc(security=BEARER)
    def get(self, request_id):
        """The outcome of one of your referrals."""
        with service().sessions() as session:
            r = session.get(SupportRequest, request_id)
            if r is None or r.created_by != g.user["sub"] or r.referrer_organisation is None:
                abort(404, message="No such referral.")
            return r


# --- health systems (FHIR) ---------------------------------------------------------------------------------------


def fhir_error(status: int, issues: list[dict]) -> Response:
    """An OperationOutcome answer."""
    from services.intake import fhir

    response = jsonify(fhir.operation_outcome(issues))
    response.status_code = status
    response.mimetype = "application/fhir+json"
    return response


@fhir_blp.route("/ServiceRequest")
class FhirServiceRequests(MethodView):
    @requires("referrer", "coordinator", "admin")
    @fhir_blp.doc(security=BEARER, requestBody={"content": {"application/fhir+json": {"schema": {"type": "object"}}}},
                  responses={"201": {"description": "The stored ServiceRequest"},
                             "422": {"description": "An OperationOutcome naming each problem"}})
    def post(self):
        """Accept an HL7 FHIR R4 ServiceRequest as a referral."""
        from services.intake import fhir

        resource = request.get_json(force=True, silent=True)
        if not isinstance(resource, dict):
            return fhir_error(400, [{"severity": "error", "code": "structure",
                                     "diagnostics": "The body is not a JSON object.",
                                     "expression": ["ServiceRequest"]}])
        try:
            referral = fhir.to_referral(resource)
            data = ReferralIn().load(referral)
        except fhir.FhirProblem as problem:
            return fhir_error(422, problem.issues)
        except ValidationError as err:
            from shared.web import field_errors

            return fhir_error(422, [{"severity": "error", "code": "invalid",
                                     "diagnostics": f"{e['field']}: {e['detail']}",
                                     "expression": [fhir.expression_for(e["field"], resource)]}
                                    for e in field_errors(err.messages)])
        with service().sessions.begin() as session:
            if (earlier := replay(session, "fhir")) is not None:
                return earlier
            r = submit(session, data, "health_system")
            r.source_document = resource
            body = fhir.stored_resource(resource, str(r.id), r.status)
            remember(session, "fhir", 201, body)
        response = jsonify(body)
        response.status_code = 201
        response.mimetype = "application/fhir+json"
        response.headers["Location"] = f"/fhir/ServiceRequest/{r.id}"
        return response


@fhir_blp.route("/ServiceRequest/<uuid:request_id>")
class FhirServiceRequestById(MethodView):
    @requires("referrer", "coordinator", "admin")
    @fhir_blp.doc(security=BEARER)
    def get(self, request_id):
        """A ServiceRequest you sent, with its status as it stands now."""
        from services.intake import fhir

        with service().sessions() as session:
            r = session.get(SupportRequest, request_id)
            if r is None or r.created_by != g.user["sub"] or r.source != "health_system":
                return fhir_error(404, [{"severity": "error", "code": "not-found",
                                         "diagnostics": "No such ServiceRequest.", "expression": ["ServiceRequest"]}])
        return Response(json.dumps(fhir.stored_resource(r.source_document, str(r.id), r.status)),
                        mimetype="application/fhir+json")


def create_app(test_config=None):
    """Intake's web app: the API, and the coordinator's pages."""
    from services.intake import pages

    return create_service_app("intake", [blp, referrals, fhir_blp, pages.blp], test_config, title="Intake")
