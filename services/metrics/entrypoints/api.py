"""Metrics' HTTP API: the counts managers report to funders and commissioners, and the group activities
coordinators log (they never pass through matching)."""

from __future__ import annotations

import csv
import io

from flask import Response
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from services.metrics import domain, service_layer
from services.metrics.domain import ACTIVITY_KINDS, MAX_PERIODS, ORGANISATION_TYPES, PERIODS, Filters
from shared import clock, idempotency
from shared.taxonomy import KINDS, SOURCES
from shared.web import Blueprint, Float, Integer, Text, current_actor, requires, service

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


CURRENCIES = ("GBP", "CAD", "EUR", "USD")


class HourlyValueIn(Schema):
    """What an hour of the community's volunteer time is worth, in the valuation it uses (a UK or an Ontario
    volunteer-hour value), from a day on."""

    amount = Float(required=True, validate=validate.Range(min=0, max=1000),
                          metadata={"description": "Per hour, in `currency` (0 to 1000)."})
    currency = fields.Str(required=True, validate=validate.OneOf(CURRENCIES))
    applies_from = fields.Date(validate=plausible_baseline, metadata={
        "description": "The first day it values (default today): every period ending on or after it, until a later "
                       "change. At most ten years ago."})
    community = fields.Str(metadata={"description": "Default: your first community."})


class HourlyValueChangeOut(Schema):
    amount = fields.Float()
    currency = fields.Str()
    applies_from = fields.Date()
    set_by = fields.Str()
    set_at = fields.AwareDateTime()


class HourlyValueOut(Schema):
    community = fields.Str()
    amount = fields.Float(metadata={"description": "Today's value of an hour (communities.json's until one is set)."})
    currency = fields.Str()
    changes = fields.List(fields.Nested(HourlyValueChangeOut), metadata={
        "description": "Every change made, the latest first: who set it and when (nothing is ever removed)."})


@blp.route("/activity/hourly-value")
class HourlyValueView(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(BaselineQuery, location="query")
    @blp.response(200, HourlyValueOut)
    @blp.doc(security=BEARER)
    def get(self, query):
        """The value of an hour of the community's volunteer time today, and every change made to it."""
        try:
            return service_layer.hourly_values_of(service().uow(), current_actor(), query.get("community"),
                                                  clock.today())
        except domain.NotYourCommunity as err:
            abort(403, message=str(err))

    @requires(*MANAGERS)
    @blp.arguments(HourlyValueIn)
    @blp.response(200, HourlyValueOut)
    @blp.doc(security=BEARER)
    def put(self, data):
        """Value an hour of the community's volunteer time from a day on (default today); the dashboard, report,
        CSV and /activity show the value of volunteer time beside the hours. Kept with who set it and when."""
        actor = current_actor()
        try:
            service_layer.set_hourly_value(service().uow(), actor, data.get("community"), data["amount"],
                                           data["currency"], data.get("applies_from") or clock.today(),
                                           clock.utcnow())
            return service_layer.hourly_values_of(service().uow(), actor, data.get("community"), clock.today())
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


class VolunteerHoursIn(Schema):
    """A volunteer who ran the activity, by id (as matching's roster gives it: metrics keeps no names), and the
    hours they gave to it, preparing and clearing up included."""

    volunteer_id = fields.UUID(required=True, metadata={"description": "The volunteer's id (GET /volunteers)."})
    hours = Float(required=True,
                         validate=validate.Range(min=0, max=24, min_inclusive=False),
                         metadata={"description": "More than 0, at most 24."})


class ActivityIn(Schema):
    """A group activity volunteers ran."""

    kind = fields.Str(required=True, validate=validate.OneOf(ACTIVITY_KINDS))
    held_on = fields.Date(required=True, validate=plausible_day, metadata={
        "description": "By today (a day's grace for time zones), and at most a year ago."})
    community = fields.Str(metadata={"description": "Default: your first community."})
    organisation = Text(load_default=None, allow_none=True, validate=validate.Length(max=200))
    organisation_type = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(ORGANISATION_TYPES))
    volunteer_ids = fields.List(fields.UUID(), load_default=list, metadata={
        "description": "Volunteers who helped, without hours (counted as active volunteers)."})
    volunteers = fields.List(fields.Nested(VolunteerHoursIn), load_default=list,
                             validate=validate.Length(max=200), metadata={
        "description": "The volunteers who ran it and each one's hours: counted in volunteer hours, and added to "
                       "each volunteer's own (HOURS by SMS, their page)."})
    attendance = Integer(required=True, validate=validate.Range(min=0, max=100_000))

    @validates("volunteers")
    def once_each(self, volunteers, **kwargs):
        """Each volunteer once: their hours are what they gave to it all together."""
        ids = [v["volunteer_id"] for v in volunteers if "volunteer_id" in v]  # (a bad one is named already)
        if len(set(ids)) != len(ids):
            raise ValidationError("Name each volunteer once, with all the hours they gave.")


class ActivityOut(ActivityIn):
    id = fields.UUID()
    volunteer_ids = fields.List(fields.Str())
    volunteers = fields.Method("contributions")
    hours = fields.Float()
    created_at = fields.AwareDateTime()

    def contributions(self, activity) -> list[dict]:
        """Each volunteer who gave hours, and their hours."""
        return [{"volunteer_id": str(v["volunteer_id"]), "hours": v["hours"]} for v in activity.contributions()]


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
