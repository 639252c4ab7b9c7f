"""Coordinators' volunteer pages: the roster with checks running out, each volunteer's page, and importing a
spreadsheet of volunteers. Each page parses, calls one use case, and renders."""

from __future__ import annotations

from flask import render_template, request

from services.matching import service_layer
from services.matching.domain import NotFound
from services.matching.entrypoints.api import COLUMNS, read_sheet
from shared import clock
from shared.taxonomy import CHECKS, KINDS, VOLUNTEER_STATUSES
from shared.web import Pages, current_actor, page_requires, service

blp = Pages("roster", __name__, description="Coordinators' volunteer pages")
COORDINATORS = ("coordinator", "admin")


def render(template: str, **context):
    """A page, with the names of checks and kinds of help."""
    return render_template(template, checks=CHECKS, kinds=KINDS, **context)


@blp.route("/roster")
@page_requires(*COORDINATORS)
def roster():
    """The community's volunteers by name, with the checks that have run out or soon will at the top."""
    status = request.args.get("status", "")
    today = clock.today()
    with service().uow() as uow:
        found = service_layer.roster(uow, current_actor(), today, status if status in VOLUNTEER_STATUSES else None)
    return render("roster.html", volunteers=found.volunteers, tasks=found.tasks, attention=found.attention,
                  status=status, statuses=VOLUNTEER_STATUSES, today=today)


@blp.route("/roster/<uuid:volunteer_id>")
@page_requires(*COORDINATORS)
def volunteer_page(volunteer_id):
    """One volunteer: their profile, checks with dates, and the tasks they took."""
    today = clock.today()
    try:
        with service().uow() as uow:
            volunteer, tasks = service_layer.volunteer_tasks(uow, current_actor(), volunteer_id)
    except NotFound:
        return render("volunteer.html", volunteer=None, tasks=[], today=today), 404
    return render("volunteer.html", volunteer=volunteer, tasks=tasks, today=today)


@blp.route("/roster/import", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def import_page():
    """Upload a volunteer spreadsheet: every row checked, each problem shown by line, all or nothing."""
    outcome, error = None, None
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            error = "Choose a CSV file to import."
        else:
            try:
                sheet = read_sheet(upload.read())
            except ValueError as err:
                error = str(err)
            else:
                with service().uow() as uow:
                    outcome = service_layer.import_volunteers(uow, current_actor(), sheet,
                                                              request.form.get("skip_invalid") == "yes")
    status = 422 if error or (outcome and outcome["errors"] and not outcome["imported"]) else 200
    return render("import.html", outcome=outcome, error=error, columns=COLUMNS), status
