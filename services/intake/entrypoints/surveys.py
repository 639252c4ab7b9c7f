"""The surveys page: the questions a community's surveys by SMS ask (ONS4, then its own), and the form to add or
retire its own. Coordinators and admins of the community they work in."""

from __future__ import annotations

from flask import redirect, request
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.datastructures import MultiDict

from services.intake import service_layer
from services.intake.domain import NotFound
from services.intake.surveys import RESPONDENT_LABELS, SurveyError
from shared import clock
from shared.contracts.intake import RESPONDENTS
from shared.web import FormErrors, Pages, Text, current_actor, page_requires, service

pages = Pages("survey_pages", __name__, description="The surveys by SMS page")
COORDINATORS = ("coordinator", "admin")
LABELS = {"respondent": "Who is asked", "text": "Question", "text_fr": "Question in French"}


class QuestionIn(Schema):
    """A question a community adds to its surveys, answered 0 to 10."""

    respondent = fields.Str(required=True, validate=validate.OneOf(RESPONDENTS))
    text = Text(required=True, validate=validate.Length(5, 200))
    text_fr = Text(load_default="", validate=validate.Length(max=200))


def surveys_page(form: MultiDict, errors: FormErrors, status: int = 200):
    """The page with what the community's surveys ask, and the form (with the errors of a form sent)."""
    from services.intake.entrypoints.pages import render
    shown = service_layer.survey_questions(service().uow(), current_actor())
    return render("surveys.html", ons4=shown["ons4"], own=shown["own"], form=form, errors=errors,
                  respondents=list(RESPONDENT_LABELS.items()), respondent_words=RESPONDENT_LABELS), status


@pages.route("/board/surveys", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def surveys():
    """What the community's surveys ask; POST adds one of its own questions (asked in surveys made from then on)."""
    if request.method == "GET":
        return surveys_page(MultiDict(), FormErrors())
    form = {name: request.form.get(name, "") for name in ("respondent", "text", "text_fr")}
    try:
        service_layer.add_survey_question(service().uow(), current_actor(), QuestionIn().load(form))
    except ValidationError as err:
        return surveys_page(request.form, FormErrors(err.messages, LABELS), 422)
    except SurveyError as err:
        return surveys_page(request.form, FormErrors().add(err.field, LABELS[err.field], str(err)), 422)
    return redirect("/board/surveys", 303)


@pages.route("/board/surveys/<uuid:question_id>/retire", methods=["POST"])
@page_requires(*COORDINATORS)
def retire(question_id):
    """Stop asking one of the community's questions in the surveys made from now on."""
    try:
        service_layer.retire_survey_question(service().uow(), current_actor(), question_id, clock.utcnow())
    except NotFound as err:
        abort(404, message=str(err))
    return redirect("/board/surveys", 303)
