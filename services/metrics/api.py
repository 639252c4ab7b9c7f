"""Metrics' HTTP API: counts of activity by day, for managers."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validates_schema

from services.metrics.model import DailyTally
from shared.web import create_service_app, requires, service

blp = Blueprint("activity", __name__, url_prefix="/activity", description="Counts of volunteer-led activity")


class ActivityQuery(Schema):
    from_ = fields.Date(data_key="from")
    to = fields.Date()

    @validates_schema
    def check_order(self, data, **kwargs):
        """The period must not end before it starts."""
        if "from_" in data and "to" in data and data["to"] < data["from_"]:
            raise ValidationError({"to": ["Must not be before from."]})


class DayCounts(Schema):
    day = fields.Date()
    counts = fields.Dict(keys=fields.Str(), values=fields.Int())


class Activity(Schema):
    from_ = fields.Date(data_key="from")
    to = fields.Date()
    totals = fields.Dict(keys=fields.Str(), values=fields.Int())
    days = fields.List(fields.Nested(DayCounts))


@blp.route("")
class ActivityView(MethodView):
    @requires("manager", "coordinator", "admin")
    @blp.arguments(ActivityQuery, location="query")
    @blp.response(200, Activity)
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self, query):
        """Events counted per day and type between `from` and `to` (inclusive; default the last 30 days)."""
        to = query.get("to") or date.today()
        start = query.get("from_") or to - timedelta(days=29)
        with service().sessions() as session:
            rows = session.execute(sa.select(DailyTally.day, DailyTally.event_type, DailyTally.count)
                                   .where(DailyTally.day.between(start, to)).order_by(DailyTally.day)).all()
        days: dict[date, dict[str, int]] = defaultdict(dict)
        totals: dict[str, int] = defaultdict(int)
        for day, event_type, count in rows:
            days[day][event_type] = count
            totals[event_type] += count
        return {"from_": start, "to": to, "totals": dict(totals),
                "days": [{"day": day, "counts": counts} for day, counts in days.items()]}


def create_app(test_config=None):
    """Metrics' web app."""
    return create_service_app("metrics", [blp], test_config, title="Metrics")
