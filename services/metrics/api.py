"""Metrics' HTTP API: the counts managers report to funders and commissioners, and the group activities
coordinators log (they never pass through matching)."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

from flask import Response, g
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.metrics import counts
from services.metrics.model import ACTIVITY_KINDS, ORGANISATION_TYPES, Activity
from shared import clock
from shared.taxonomy import KINDS
from shared.web import create_service_app, requires, service

BEARER = [{"bearerAuth": []}]
MANAGERS = ("manager", "admin")
blp = Blueprint("activity", __name__, description="Counts of volunteer-led activity")
activities = Blueprint("activities", __name__, url_prefix="/activities", description="Group activities")


class ActivityQuery(Schema):
    community = fields.Str(metadata={"description": "One of your communities (default: all of them)."})
    period = fields.Str(load_default="month", validate=validate.OneOf(counts.PERIODS))
    from_ = fields.Date(data_key="from", metadata={"description": "Default: the start of the period a year ago."})
    to = fields.Date(metadata={"description": "Default: today."})
    kind = fields.Str(validate=validate.OneOf(sorted(KINDS)), metadata={"description": "Only this kind of help."})
    source = fields.Str(validate=validate.OneOf(counts.SOURCES), metadata={"description": "Only from this source."})

    @validates_schema
    def check_range(self, data, **kwargs):
        if "from_" in data and "to" in data and data["to"] < data["from_"]:
            raise ValidationError({"to": ["Must not be before from."]})
        if "from_" in data and "to" in data and len(counts.periods_between(data["period"], data["from_"],
                                                                           data["to"])) > 400:
            raise ValidationError({"from": ["Ask for at most 400 periods at once."]})


class PeriodOut(Schema):
    start = fields.Date()
    end = fields.Date()
    measures = fields.Dict(metadata={"description": "Each measure; counts from 1 to 4 read '<5'."})
    previous = fields.Dict(metadata={"description": "The same measures for the period before."})


class ReportOut(Schema):
    period = fields.Str()
    from_ = fields.Date(data_key="from", attribute="from")
    to = fields.Date()
    communities = fields.List(fields.Str())
    periods = fields.List(fields.Nested(PeriodOut))


def scope(query: dict) -> tuple[list[str], date, date]:
    """The communities, first and last day a query asks about (a manager sees only their own communities)."""
    from flask_smorest import abort

    mine = list(g.user["communities"])
    if "community" in query:
        if query["community"] not in mine:
            abort(403, message="You may see only your own communities' counts.")
        mine = [query["community"]]
    to = query.get("to") or clock.today()
    start = query.get("from_") or counts.period_of(query["period"], to - timedelta(days=365))[0]
    return mine, start, to


def run(query: dict) -> dict:
    communities, start, to = scope(query)
    with service().sessions() as session:
        return counts.report(session, communities, query["period"], start, to, query.get("kind"),
                             query.get("source"))


@blp.route("/activity")
class ActivityView(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(ActivityQuery, location="query")
    @blp.response(200, ReportOut)
    @blp.doc(security=BEARER)
    def get(self, query):
        """Every measure per period, with the period before beside it; counts only, small ones as "<5"."""
        return run(query)


@blp.route("/activity.csv")
class ActivityCsv(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(ActivityQuery, location="query")
    @blp.doc(security=BEARER, responses={"200": {"description": "The same as GET /activity, as a table",
                                                 "content": {"text/csv": {"schema": {"type": "string"}}}}})
    def get(self, query):
        """The counts as CSV, one row per period and measure, as the dashboard's table shows them."""
        out = io.StringIO()
        csv.writer(out).writerows(counts.csv_rows(run(query)))
        return Response(out.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="activity.csv"'})


def has_happened(day: date) -> None:
    """An activity is logged once it has happened (a day's grace for time zones)."""
    if day > clock.today() + timedelta(days=1):
        raise ValidationError("Log an activity once it has happened.")


class ActivityIn(Schema):
    """A group activity volunteers ran."""

    kind = fields.Str(required=True, validate=validate.OneOf(ACTIVITY_KINDS))
    held_on = fields.Date(required=True, validate=lambda day: has_happened(day))
    community = fields.Str(metadata={"description": "Default: your first community."})
    organisation = fields.Str(load_default=None, allow_none=True, validate=validate.Length(max=200))
    organisation_type = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(ORGANISATION_TYPES))
    volunteer_ids = fields.List(fields.UUID(), load_default=list)
    attendance = fields.Int(required=True, validate=validate.Range(min=0, max=100_000))


class ActivityOut(ActivityIn):
    id = fields.UUID()
    volunteer_ids = fields.List(fields.Str())
    created_at = fields.AwareDateTime()


@activities.route("")
class Activities(MethodView):
    @requires("coordinator", "admin")
    @activities.arguments(ActivityIn)
    @activities.response(201, ActivityOut)
    @activities.doc(security=BEARER)
    def post(self, data):
        """Log a group activity: a bereavement group, a Death Cafe, a Dying Matters event, a planning session."""
        from flask_smorest import abort

        community = data.pop("community", None) or g.user["communities"][0]
        if community not in g.user["communities"]:
            abort(403, message="You may log activities only for your own communities.")
        with service().sessions.begin() as session:
            activity = Activity(community=community, created_by=g.user["sub"],
                                volunteer_ids=[str(v) for v in data.pop("volunteer_ids")], **data)
            session.add(activity)
        return activity


def create_app(test_config=None):
    """Metrics' web app: the counts API, and the managers' dashboard."""
    from services.metrics import pages

    return create_service_app("metrics", [blp, activities, pages.blp], test_config, title="Metrics")
