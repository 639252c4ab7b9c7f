"""Metrics' HTTP API: the counts managers report to funders and commissioners, and the group activities
coordinators log (they never pass through matching)."""

from __future__ import annotations

import csv
import io

from flask import Response
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.metrics import domain, service_layer
from services.metrics.domain import ACTIVITY_KINDS, MAX_PERIODS, ORGANISATION_TYPES, PERIODS, Filters
from shared import clock, idempotency
from shared.taxonomy import KINDS, SOURCES
from shared.web import Blueprint, Integer, Text, current_actor, requires, service

BEARER = [{"bearerAuth": []}]
MANAGERS = ("manager", "admin")
blp = Blueprint("activity", __name__, description="Counts of volunteer-led activity")
activities = Blueprint("activities", __name__, url_prefix="/activities", description="Group activities")


class ActivityQuery(Schema):
    community = fields.Str(metadata={"description": "One of your communities (default: all of them)."})
    period = fields.Str(load_default="month", validate=validate.OneOf(PERIODS))
    from_ = fields.Date(data_key="from", metadata={"description": "Default: the start of the period a year ago."})
    to = fields.Date(metadata={"description": "Default: today."})
    kind = fields.Str(validate=validate.OneOf(sorted(KINDS)), metadata={"description": "Only this kind of help."})
    source = fields.Str(validate=validate.OneOf(SOURCES), metadata={"description": "Only from this source."})

    @validates_schema
    def check_range(self, data, **kwargs):
        """`to` is not before `from`, and they span at most MAX_PERIODS periods."""
        if "from_" in data and "to" in data and data["to"] < data["from_"]:
            raise ValidationError({"to": ["Must not be before from."]})
        if "from_" in data and "to" in data and len(domain.periods_between(data["period"], data["from_"],
                                                                           data["to"])) > MAX_PERIODS:
            raise ValidationError({"from": [f"Ask for at most {MAX_PERIODS} periods at once."]})


def filters_of(query: dict) -> Filters:
    """What an ActivityQuery narrows the counts to."""
    return Filters(community=query.get("community"), start=query.get("from_"), end=query.get("to"),
                   kind=query.get("kind"), source=query.get("source"))


class PeriodOut(Schema):
    start = fields.Date()
    end = fields.Date()
    measures = fields.Dict(metadata={"description": "Each measure; counts from 1 to 4 read '<5', and "
                                           "'hidden' where a total and its other parts would give one away."})
    previous = fields.Dict(metadata={"description": "The same measures for the period before."})
    equity = fields.Dict(metadata={"description": "Reach and equity: the people supported by each monitoring answer "
                                                  "(age band, sex, ethnic group, first language, disability, "
                                                  "deprivation decile), each adding up to people_reached and "
                                                  "suppressed with the measures."})
    previous_equity = fields.Dict(metadata={"description": "The same distributions for the period before."})


class BaselinePeriodOut(Schema):
    start = fields.Date()
    end = fields.Date()
    measures = fields.Dict(metadata={"description": "Each measure in the baseline's period of the same length, "
                                           "suppressed as the others are."})


class ReportOut(Schema):
    period = fields.Str()
    from_ = fields.Date(data_key="from", attribute="from")
    to = fields.Date()
    communities = fields.List(fields.Str())
    periods = fields.List(fields.Nested(PeriodOut))
    baseline = fields.Nested(BaselinePeriodOut, allow_none=True, metadata={
        "description": "For one community whose manager set a baseline: its period of this length (null otherwise)."})


def plausible_baseline(day) -> None:
    """A baseline's day as the domain finds plausible: it has happened, at most ten years ago."""
    why = domain.baseline_day_problem(day, clock.today())
    if why:
        raise ValidationError(why)


class BaselineIn(Schema):
    """The period a community compares itself with: the month, quarter or year (as the counts are asked for) that
    `starts_on` falls in."""

    starts_on = fields.Date(required=True, validate=plausible_baseline, metadata={
        "description": "Any day of the baseline: its period of each length is the one this day falls in."})
    community = fields.Str(metadata={"description": "Default: your first community."})


class BaselineOut(Schema):
    community = fields.Str()
    starts_on = fields.Date()
    set_by = fields.Str()
    set_at = fields.AwareDateTime()


class BaselineQuery(Schema):
    community = fields.Str(metadata={"description": "Default: your first community."})


def counts(query: dict) -> dict:
    """The counts an ActivityQuery asks for (403 for a community that is not the caller's)."""
    context = service()
    try:
        return service_layer.activity(context.uow(), current_actor(), query["period"], filters_of(query),
                                      context.settings, clock.today())
    except domain.NotYourCommunity as err:
        abort(403, message=str(err))


@blp.route("/activity")
class ActivityView(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(ActivityQuery, location="query")
    @blp.response(200, ReportOut)
    @blp.doc(security=BEARER)
    def get(self, query):
        """Every measure per period, with the period before beside it; counts only, small ones as "<5"."""
        return counts(query)


@blp.route("/activity.csv")
class ActivityCsv(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(ActivityQuery, location="query")
    @blp.doc(security=BEARER, responses={"200": {"description": "The same as GET /activity, as a table",
                                                 "content": {"text/csv": {"schema": {"type": "string"}}}}})
    def get(self, query):
        """The counts as CSV, one row per period and measure, as the dashboard's table shows them."""
        return csv_file(counts(query))


@blp.route("/activity/baseline")
class BaselineView(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(BaselineQuery, location="query")
    @blp.response(200, BaselineOut)
    @blp.doc(security=BEARER)
    def get(self, query):
        """The community's baseline (404 when its manager has not set one)."""
        try:
            baseline = service_layer.baseline_of(service().uow(), current_actor(), query.get("community"))
        except domain.NotYourCommunity as err:
            abort(403, message=str(err))
        if baseline is None:
            abort(404, message="No baseline is set for this community.")
        return baseline

    @requires(*MANAGERS)
    @blp.arguments(BaselineIn)
    @blp.response(200, BaselineOut)
    @blp.doc(security=BEARER)
    def put(self, data):
        """Set the period the community compares itself with; the dashboard, report and /activity show it beside
        the period before (setting it again moves it)."""
        try:
            return service_layer.set_baseline(service().uow(), current_actor(), data.get("community"),
                                              data["starts_on"], clock.utcnow())
        except domain.NotYourCommunity as err:
            abort(403, message=str(err))

    @requires(*MANAGERS)
    @blp.arguments(BaselineQuery, location="query")
    @blp.response(204)
    @blp.doc(security=BEARER)
    def delete(self, query):
        """Compare with the period before only: the community's baseline is no longer shown."""
        try:
            service_layer.remove_baseline(service().uow(), current_actor(), query.get("community"))
        except domain.NotYourCommunity as err:
            abort(403, message=str(err))


def csv_file(result: dict) -> Response:
    """Counts as a CSV file to save, one row per period and measure (the API's and the dashboard's download)."""
    out = io.StringIO()
    csv.writer(out).writerows(domain.csv_rows(result))
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="activity.csv"'})


def plausible_day(day) -> None:
    """The day of an activity as the domain finds plausible: it has happened, at most a year ago."""
    why = domain.activity_day_problem(day, clock.today())
    if why:
        raise ValidationError(why)


class ActivityIn(Schema):
    """A group activity volunteers ran."""

    kind = fields.Str(required=True, validate=validate.OneOf(ACTIVITY_KINDS))
    held_on = fields.Date(required=True, validate=plausible_day, metadata={
        "description": "By today (a day's grace for time zones), and at most a year ago."})
    community = fields.Str(metadata={"description": "Default: your first community."})
    organisation = Text(load_default=None, allow_none=True, validate=validate.Length(max=200))
    organisation_type = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(ORGANISATION_TYPES))
    volunteer_ids = fields.List(fields.UUID(), load_default=list)
    attendance = Integer(required=True, validate=validate.Range(min=0, max=100_000))


class ActivityOut(ActivityIn):
    id = fields.UUID()
    volunteer_ids = fields.List(fields.Str())
    created_at = fields.AwareDateTime()


@activities.route("")
class Activities(MethodView):
    @requires("coordinator", "admin")
    @activities.arguments(ActivityIn)
    @activities.response(201, ActivityOut)
    @activities.doc(security=BEARER, parameters=[idempotency.PARAMETER])
    def post(self, data):
        """Log a group activity: a bereavement group, a Death Cafe, a Dying Matters event, a planning session (once
        per Idempotency-Key)."""
        try:
            created = service_layer.log_activity(service().uow(), current_actor(), data, clock.utcnow(),
                                                 idempotency.Idempotency.of_request("activities"),
                                                 render=ActivityOut().dump)
        except domain.NotYourCommunity as err:
            abort(403, message=str(err))
        return idempotency.answer(created.body, created.status_code, created.replayed)
