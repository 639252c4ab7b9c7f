"""Matching's HTTP API: register volunteers and list them."""

from __future__ import annotations

import sqlalchemy as sa
from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields, validate

from services.matching.model import Volunteer
from shared.taxonomy import SKILLS
from shared.web import PhoneNumber, create_service_app, requires, service

blp = Blueprint("volunteers", __name__, url_prefix="/volunteers", description="Trained volunteers")


class VolunteerIn(Schema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    phone = PhoneNumber(required=True)
    skills = fields.List(fields.Str(validate=validate.OneOf(SKILLS)), required=True,
                         validate=validate.Length(min=1))
    latitude = fields.Float(required=True, validate=validate.Range(-90, 90))
    longitude = fields.Float(required=True, validate=validate.Range(-180, 180))
    max_distance_km = fields.Float(required=True, validate=validate.Range(min=0, max=200, min_inclusive=False))


class VolunteerOut(VolunteerIn):
    id = fields.UUID()
    community = fields.Str()
    active = fields.Bool()
    created_at = fields.AwareDateTime()


@blp.route("")
class Volunteers(MethodView):
    @requires("coordinator", "admin")
    @blp.arguments(VolunteerIn)
    @blp.response(201, VolunteerOut)
    @blp.doc(security=[{"bearerAuth": []}])
    def post(self, data):
        """Register a trained volunteer."""
        with service().sessions.begin() as session:
            if session.scalar(sa.select(Volunteer.id).where(Volunteer.phone == data["phone"])):
                abort(409, message="A volunteer with this phone number is already registered.")
            volunteer = Volunteer(community=g.user["communities"][0], **data)
            session.add(volunteer)
        return volunteer

    @requires("coordinator", "admin")
    @blp.response(200, VolunteerOut(many=True))
    @blp.paginate()
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self, pagination_parameters):
        """The community's volunteers, by name."""
        where = Volunteer.community.in_(g.user["communities"])
        with service().sessions() as session:
            pagination_parameters.item_count = session.scalar(
                sa.select(sa.func.count()).select_from(Volunteer).where(where))
            return session.scalars(sa.select(Volunteer).where(where).order_by(Volunteer.name)
                                   .offset(pagination_parameters.first_item)
                                   .limit(pagination_parameters.page_size)).all()


def create_app(test_config=None):
    """Matching's web app."""
    return create_service_app("matching", [blp], test_config, title="Matching")
