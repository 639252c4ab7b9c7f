"""Intake's HTTP API: log a request for support, and see where it has got to."""

from __future__ import annotations

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
import sqlalchemy as sa

from services.intake.model import STATUSES, SupportRequest, outbox
from shared import gazetteer
from shared.taxonomy import KINDS
from shared.web import PhoneNumber, create_service_app, requires, service

blp = Blueprint("requests", __name__, url_prefix="/requests", description="Requests for support")


class RequestIn(Schema):
    """What a coordinator or referrer tells us about a request."""

    requester_name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    requester_phone = PhoneNumber(required=True)
    postcode = fields.Str(validate=validate.Length(max=10))
    latitude = fields.Float(validate=validate.Range(-90, 90))
    longitude = fields.Float(validate=validate.Range(-180, 180))
    support_type = fields.Str(required=True, validate=validate.OneOf(sorted(KINDS)))
    window_start = fields.AwareDateTime(required=True)
    window_end = fields.AwareDateTime(required=True)
    notes = fields.Str(load_default="", validate=validate.Length(max=4000))

    @validates_schema
    def check_place_and_window(self, data, **kwargs):
        """Need a postcode we know or both coordinates, and a window that ends after it starts."""
        errors: dict[str, list[str]] = {}
        if "postcode" in data:
            try:
                place = gazetteer.locate(data["postcode"])
            except gazetteer.UnknownPostcode as err:
                errors["postcode"] = [str(err)]
            else:
                data["area"] = place.district
                data.setdefault("latitude", place.latitude)
                data.setdefault("longitude", place.longitude)
        elif "latitude" not in data or "longitude" not in data:
            for name in ("latitude", "longitude"):
                if name not in data:
                    errors[name] = ["Give a postcode, or both latitude and longitude."]
        if "window_start" in data and "window_end" in data and data["window_end"] <= data["window_start"]:
            errors["window_end"] = ["Must be after window_start."]
        if errors:
            raise ValidationError(errors)


class RequestOut(Schema):
    id = fields.UUID()
    status = fields.Str(metadata={"enum": list(STATUSES)})
    community = fields.Str()
    requester_name = fields.Str()
    requester_phone = fields.Str()
    postcode = fields.Str(allow_none=True)
    area = fields.Str()
    latitude = fields.Float()
    longitude = fields.Float()
    support_type = fields.Str()
    window_start = fields.AwareDateTime()
    window_end = fields.AwareDateTime()
    notes = fields.Str()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class RequestQuery(Schema):
    status = fields.Str(validate=validate.OneOf(STATUSES))


@blp.route("")
class Requests(MethodView):
    @requires("coordinator", "admin")
    @blp.arguments(RequestIn)
    @blp.response(201, RequestOut)
    @blp.doc(security=[{"bearerAuth": []}])
    def post(self, data):
        """Log a request for support; matching is asked to find a volunteer."""
        community = g.user["communities"][0]
        with service().sessions.begin() as session:
            request = SupportRequest(community=community, area=data.pop("area", ""), **data)
            session.add(request)
            session.flush()
            outbox.add(session, "request.submitted", {
                "request_id": request.id,
                "community": community,
                "support_type": request.support_type,
                "latitude": request.latitude,
                "longitude": request.longitude,
                "area": request.area,
                "window_start": request.window_start,
                "window_end": request.window_end,
            }, correlation_id=str(request.id))
        return request

    @requires("coordinator", "admin")
    @blp.arguments(RequestQuery, location="query")
    @blp.response(200, RequestOut(many=True))
    @blp.paginate()
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self, query, pagination_parameters):
        """The community's requests, newest first."""
        where = [SupportRequest.community.in_(g.user["communities"])]
        if "status" in query:
            where.append(SupportRequest.status == query["status"])
        with service().sessions() as session:
            pagination_parameters.item_count = session.scalar(
                sa.select(sa.func.count()).select_from(SupportRequest).where(*where))
            return session.scalars(
                sa.select(SupportRequest).where(*where).order_by(SupportRequest.created_at.desc())
                .offset(pagination_parameters.first_item).limit(pagination_parameters.page_size)).all()


@blp.route("/<uuid:request_id>")
class RequestById(MethodView):
    @requires("coordinator", "admin")
    @blp.response(200, RequestOut)
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self, request_id):
        """One request and its current status."""
        with service().sessions() as session:
            request = session.get(SupportRequest, request_id)
        if request is None or request.community not in g.user["communities"]:
            abort(404, message="No such request.")
        return request


def create_app(test_config=None):
    """Intake's web app."""
    return create_service_app("intake", [blp], test_config, title="Intake")
