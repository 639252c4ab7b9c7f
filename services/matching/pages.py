"""Coordinators' volunteer pages: the roster with checks running out, each volunteer's page, and importing a
spreadsheet of volunteers."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa
from flask import g, render_template, request
from flask_smorest import Blueprint

from services.matching.api import COLUMNS, import_volunteers
from services.matching.model import VOLUNTEER_STATUSES, MatchRequest, Offer, Volunteer, VolunteerCheck
from shared import clock
from shared.communities import get as community
from shared.taxonomy import CHECKS, KINDS
from shared.web import check_csrf, page_requires, service

blp = Blueprint("roster", __name__, description="Coordinators' volunteer pages")
COORDINATORS = ("coordinator", "admin")
SOON_DAYS = 30
HELD = ("accepted", "completed")  # offers that became tasks


def check_state(check: VolunteerCheck, today: date) -> str:
    """'expired', 'expiring' (within 30 days) or 'valid'."""
    if check.expires_on is None or check.expires_on > today + timedelta(days=SOON_DAYS):
        return "valid"
    return "expired" if check.expires_on < today else "expiring"


def render(template: str, **context):
    return render_template(template, checks=CHECKS, kinds=KINDS, **context)


@blp.route("/roster")
@page_requires(*COORDINATORS)
def roster():
    """The community's volunteers by name, with the checks that have run out or soon will at the top."""
    status = request.args.get("status", "")
    today = clock.today()
    where = [Volunteer.community.in_(g.user["communities"])]
    if status in VOLUNTEER_STATUSES:
        where.append(Volunteer.status == status)
    month = datetime.combine(today.replace(day=1), time.min, tzinfo=community(g.user["communities"][0]).zone)
    with service().sessions() as db:
        volunteers = db.scalars(sa.select(Volunteer).where(*where).order_by(Volunteer.name)).all()
        tasks = Counter(db.scalars(sa.select(Offer.volunteer_id).where(
            Offer.status.in_(HELD), Offer.answered_at >= month,
            Offer.volunteer_id.in_([v.id for v in volunteers]))))
        attention = sorted(((v, c, check_state(c, today)) for v in volunteers for c in v.checks
                            if check_state(c, today) != "valid"), key=lambda item: item[1].expires_on)
    return render("roster.html", volunteers=volunteers, tasks=tasks, attention=attention, status=status,
                  statuses=VOLUNTEER_STATUSES, today=today)


@blp.route("/roster/<uuid:volunteer_id>")
@page_requires(*COORDINATORS)
def volunteer_page(volunteer_id):
    """One volunteer: their profile, checks with dates, and the tasks they took."""
    today = clock.today()
    with service().sessions() as db:
        volunteer = db.get(Volunteer, volunteer_id)
        if volunteer is None or volunteer.community not in g.user["communities"]:
            return render("volunteer.html", volunteer=None, tasks=[], today=today, check_state=check_state), 404
        tasks = db.execute(sa.select(Offer, MatchRequest)
                           .join(MatchRequest, Offer.request_id == MatchRequest.request_id)
                           .where(Offer.volunteer_id == volunteer.id, Offer.status.in_(HELD))
                           .order_by(Offer.answered_at.desc())).all()
    return render("volunteer.html", volunteer=volunteer, tasks=tasks, today=today, check_state=check_state)


@blp.route("/roster/import", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def import_page():
    """Upload a volunteer spreadsheet: every row checked, each problem shown by line, all or nothing."""
    outcome, error = None, None
    if request.method == "POST":
        check_csrf()
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            error = "Choose a CSV file to import."
        else:
            skip = request.form.get("skip_invalid") == "yes"
            with service().sessions.begin() as db:
                try:
                    outcome = import_volunteers(db, upload.read(), g.user["communities"][0], skip)
                except ValueError as err:
                    error = str(err)
    status = 422 if error or (outcome and outcome["errors"] and not outcome["imported"]) else 200
    return render("import.html", outcome=outcome, error=error, columns=COLUMNS), status
