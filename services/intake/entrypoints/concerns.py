"""The safeguarding log's pages and API: volunteers' concerns about the people they help (raised by SMS), open ones
first, and what a coordinator did about each. Coordinators and admins of the concern's community only."""

from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.datastructures import MultiDict

from services.intake import service_layer
from services.intake.domain import Concern, ConcernClosed, NotFound, SupportRequest
from shared import idempotency
from shared.taxonomy import CONCERN_ACTIONS
from shared.web import Blueprint, Boolean, FormErrors, Pages, Text, current_actor, page_requires, requires, service

pages = Pages("concern_pages", __name__, description="The safeguarding log's pages")
api = Blueprint("concerns", __name__, url_prefix="/concerns",
                description="Volunteers' concerns about the people they help: the safeguarding log")
COORDINATORS = ("coordinator", "admin")
BEARER = [{"bearerAuth": []}]
ACTION_CHOICES = list(CONCERN_ACTIONS.items())
LABELS = {"action": "What was done", "note": "Note", "close": "Close the concern"}


# --- what comes in and goes out -----------------------------------------------------------------------------------


class ActionIn(Schema):
    """What a coordinator did about a concern, and whether that closes it."""

    action = fields.Str(required=True, validate=validate.OneOf(sorted(CONCERN_ACTIONS)), metadata={
        "description": "noted, called_person, referred_safeguarding (the local authority's safeguarding team), "
                       "referred_gp, referred_hospice or emergency_services."})
    note = Text(multiline=True, load_default="", validate=validate.Length(max=4000))
    close = Boolean(load_default=False, metadata={"description": "This action closes the concern."})


class ActionOut(Schema):
    action = fields.Str(metadata={"enum": sorted(CONCERN_ACTIONS)})
    note = fields.Str()
    by = fields.Str()
    at = fields.AwareDateTime()
    closes = fields.Bool()


class ConcernOut(Schema):
    """A concern as the safeguarding log keeps it: the volunteer's words, never changed, and what was done."""

    id = fields.UUID()
    request_id = fields.UUID()
    community = fields.Str()
    volunteer_id = fields.UUID()
    text = fields.Str(metadata={"description": "The volunteer's words, as they texted them."})
    raised_at = fields.AwareDateTime()
    opened_at = fields.AwareDateTime()
    open = fields.Bool(attribute="is_open")
    closed_at = fields.AwareDateTime(allow_none=True)
    actions = fields.List(fields.Nested(ActionOut))


CONCERN_OUT = ConcernOut()


# --- the API ------------------------------------------------------------------------------------------------------


@api.route("")
class Concerns(MethodView):
    @requires(*COORDINATORS)
    @api.response(200, ConcernOut(many=True))
    @api.paginate()
    @api.doc(security=BEARER)
    def get(self, pagination_parameters):
        """The concerns in your communities, open ones first, then newest, a page at a time."""
        return [concern for concern, _ in service_layer.list_concerns(service().uow(), current_actor(),
                                                                       page=pagination_parameters)]


@api.route("/<uuid:concern_id>")
class ConcernById(MethodView):
    @requires(*COORDINATORS)
    @api.response(200, ConcernOut)
    @api.doc(security=BEARER)
    def get(self, concern_id):
        """One concern, with what was done about it."""
        try:
            return service_layer.get_concern(service().uow(), current_actor(), concern_id)[0]
        except NotFound as err:
            abort(404, message=str(err))


@api.route("/<uuid:concern_id>/actions")
class ConcernActions(MethodView):
    @requires(*COORDINATORS)
    @api.arguments(ActionIn)
    @api.response(201, ConcernOut)
    @api.doc(security=BEARER, parameters=[idempotency.PARAMETER])
    def post(self, data, concern_id):
        """Record what was done about a concern (appended to the log), and with `close`, close it; with an
        Idempotency-Key, a retry adds nothing more and gets the first answer again."""
        try:
            done = service_layer.act_on_concern(service().uow(), current_actor(), concern_id, data["action"],
                                                data["note"], data["close"],
                                                key=idempotency.Idempotency.of_request("concerns"),
                                                render=CONCERN_OUT.dump)
        except NotFound as err:
            abort(404, message=str(err))
        except ConcernClosed as err:
            abort(409, message=str(err))
        return idempotency.answer(done.body, done.status_code, done.replayed,
                                  url_for("concerns.ConcernById", concern_id=concern_id))


# --- the pages ----------------------------------------------------------------------------------------------------


def render(template: str, **context: Any):
    """Render a concerns page with what they all use."""
    from services.intake.entrypoints.pages import render as render_page
    return render_page(template, action_choices=ACTION_CHOICES, action_words=CONCERN_ACTIONS, **context)


@pages.route("/board/concerns")
@page_requires(*COORDINATORS)
def concerns():
    """Every concern in the coordinator's communities, open ones first."""
    rows = service_layer.list_concerns(service().uow(), current_actor())
    return render("concerns.html", rows=rows)


def concern_page(concern: Concern, r: SupportRequest, form: MultiDict, errors: FormErrors, status: int = 200):
    return render("concern.html", concern=concern, r=r, form=form, errors=errors), status


@pages.route("/board/concerns/<uuid:concern_id>", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def concern(concern_id):
    """A concern: the volunteer's words, the request it is about, what was done; and the form to record an action
    (and close it)."""
    try:
        found, r = service_layer.get_concern(service().uow(), current_actor(), concern_id)
    except NotFound as err:
        abort(404, message=str(err))
    if request.method == "GET":
        return concern_page(found, r, MultiDict(), FormErrors())
    form = {"action": request.form.get("action", ""), "note": request.form.get("note", ""),
            "close": request.form.get("close") == "1"}
    try:
        data = ActionIn().load(form)
        service_layer.act_on_concern(service().uow(), current_actor(), concern_id, data["action"], data["note"],
                                     data["close"])
    except ValidationError as err:
        return concern_page(found, r, request.form, FormErrors(err.messages, LABELS), 422)
    except ConcernClosed as err:
        return concern_page(found, r, request.form, FormErrors().add("action", LABELS["action"], str(err)), 409)
    return redirect(f"/board/concerns/{concern_id}", 303)


def of_request(r: SupportRequest) -> list[Concern]:
    """A request's concerns, for its page (a coordinator's or admin's only)."""
    return [concern for concern, _ in service_layer.list_concerns(service().uow(), current_actor(), r.id)]
