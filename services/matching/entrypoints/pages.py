"""Coordinators' volunteer pages: the roster with checks running out, each volunteer's page, adding and editing a
volunteer, pausing, resuming or recording that they left, renewing a check, and importing a spreadsheet of
volunteers (with a template to start from); the public page for applying to volunteer, and the coordinators' board
of applicants; training sessions (schedule, invite, record attendance). Each page parses, calls one use case, and
renders."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from typing import Any

from flask import Response, redirect, render_template, request
from marshmallow import ValidationError
from werkzeug.datastructures import MultiDict

from services.matching import service_layer
from services.matching.domain import (DEFAULT_RULES, INVITATION_NAMES, LEAVING, PUBLIC_TOPICS, STAGE_NAMES, CheckRules,
                                      Conflict, Invalid, NotFound, TooManyApplications, Volunteer)
from services.matching.entrypoints.api import (CONSENT, COLUMNS, NUMBER_COLUMNS, OFFERED_KINDS, RETRY_AFTER_SECONDS,
                                               ApplicationIn, CheckIn, CheckTypeIn, CheckTypePatch, DoneIn,
                                               PublicPersonIn, SessionIn, StageIn, VolunteerIn, as_number, read_sheet,
                                               take_application)
from shared import clock
from shared.communities import all_communities
from shared.taxonomy import (ACTIVITY_LABELS, BEFRIENDING_END_REASONS, DAYS, GENDERS, KINDS, LANGUAGES, PARTS_OF_DAY,
                             SKILLS, VOLUNTEER_STATUSES)
from shared.auth import local_path
from shared.web import FormErrors, Pages, current_actor, page_requires, service

blp = Pages("roster", __name__, description="Coordinators' volunteer pages")
COORDINATORS = ("coordinator", "admin")


def render(template: str, rules: CheckRules = DEFAULT_RULES, **context):
    """A page, with the names of the community's checks (`rules`; the checks that may be recorded, and the names of
    all, retired ones too) and of kinds of help, and what the volunteer form offers."""
    return render_template(template, checks=rules.active(), check_names={k: t.name for k, t in rules.types.items()},
                           kinds=KINDS, skills=[_skill_choice(skill, rules) for skill in SKILLS], languages=LANGUAGES,
                           genders=[(g, g.capitalize()) for g in GENDERS], days=DAYS, parts_of_day=PARTS_OF_DAY,
                           **context)


def _rules() -> CheckRules:
    """The signed-in user's community's checks and requirements."""
    with service().uow() as uow:
        return uow.checks.rules(current_actor().community)


def _skill_choice(skill: str, rules: CheckRules) -> tuple[str, str]:
    """A skill as the form offers it, with the checks its kinds of help need here, where a coordinator decides."""
    order = list(rules.types)
    needed = sorted({check for key, kind in KINDS.items() if kind.skill == skill for check in rules.needed(key)},
                    key=order.index)
    kinds = ", ".join(kind.label.lower() for kind in KINDS.values() if kind.skill == skill)
    names = [rules.name(c) for c in needed]
    checks = ", ".join(n[:1].lower() + n[1:] for n in names) or "no checks"  # "DBS" and "Ontario" kept as written
    return skill, f"{skill.replace('_', ' ').capitalize()}: {kinds} (needs {checks})"


LABELS = {"name": "Name", "phone": "Mobile phone", "postcode": "Postcode", "max_distance_km": "Travels up to (km)",
          "weekly_cap": "Tasks a week at most", "skills": "What they can help with", "languages": "Languages",
          "gender": "Gender", "availability": "When they are free", "status_reason": "Why they left",
          "check": "Check", "done_on": "Done on", "expires_on": "Expires on"}


def labels_of(rules: CheckRules) -> dict[str, str]:
    """The volunteer form's labels, with a pair for each of the community's checks."""
    return {**LABELS, **{f"checks.{check}.{edge}": f"{name}: {'done on' if edge == 'done_on' else 'expires on'}"
                         for check, name in rules.active().items() for edge in ("done_on", "expires_on")}}


def profile_of(form: MultiDict, rules: CheckRules = DEFAULT_RULES) -> tuple[dict[str, Any], list[str]]:
    """The volunteer form as the body POST /volunteers takes, and the check each entry of its `checks` is (so an
    error about `checks.1.expires_on` can be shown beside that check's field). Empty fields are left out; the
    checks are the community's (`rules`)."""
    data: dict[str, Any] = {}
    for name in ("name", "phone", "postcode", "max_distance_km", "weekly_cap", "gender"):
        if value := form.get(name, "").strip():
            data[name] = as_number(value) if name in NUMBER_COLUMNS else value
    data["skills"] = form.getlist("skills")  # none ticked: "choose at least one"
    if form.getlist("languages"):
        data["languages"] = form.getlist("languages")
    data["availability"] = [{"days": form.getlist(f"availability.{part}"), "part_of_day": part}
                            for part in PARTS_OF_DAY if form.getlist(f"availability.{part}")]
    order = [check for check in rules.active()
             if form.get(f"checks.{check}.done_on") or form.get(f"checks.{check}.expires_on")]
    if order:
        data["checks"] = [{"check": check, **{edge: form[f"checks.{check}.{edge}"] for edge in ("done_on", "expires_on")
                                              if form.get(f"checks.{check}.{edge}")}} for check in order]
    return data, order


def form_of(volunteer: Volunteer) -> MultiDict:
    """A volunteer as the form shows them, to edit."""
    form = MultiDict({"name": volunteer.name, "phone": volunteer.phone, "postcode": volunteer.postcode or "",
                      "max_distance_km": f"{volunteer.max_distance_km:g}", "weekly_cap": str(volunteer.weekly_cap),
                      "gender": volunteer.gender or ""})
    form.setlist("skills", list(volunteer.skills))
    form.setlist("languages", list(volunteer.languages))
    for window in volunteer.availability:
        day, _, part = window.partition(":")
        form.add(f"availability.{part}", day)
    for c in volunteer.checks:
        form[f"checks.{c.check}.done_on"] = c.done_on.isoformat()
        form[f"checks.{c.check}.expires_on"] = c.expires_on.isoformat() if c.expires_on else ""
    return form


def _form_errors(err: ValidationError | Invalid, order: list[str], rules: CheckRules) -> FormErrors:
    """The schema's complaints about the form, each named by the form field it is about."""
    def rename(field: str) -> str:
        head, _, rest = field.partition(".")
        if head == "checks" and rest.split(".")[0].isdigit():
            index, _, edge = rest.partition(".")
            return f"checks.{order[int(index)]}.{edge or 'done_on'}"
        return head if head == "availability" else field
    return FormErrors(err.messages, labels_of(rules), rename)


def _volunteer_form(volunteer: Volunteer | None = None):
    """Add a volunteer (`volunteer` None) or change one: the form, and on a valid post the volunteer's page."""
    rules = _rules()
    if request.method == "GET":
        return render("volunteer_form.html", rules, volunteer=volunteer, errors=FormErrors(),
                      form=form_of(volunteer) if volunteer else MultiDict({"max_distance_km": "10",
                                                                            "weekly_cap": "3", "languages": "en"}))
    data, order = profile_of(request.form, rules)
    try:
        profile = VolunteerIn().load(data)
    except ValidationError as err:
        errors = _form_errors(err, order, rules)
    else:
        try:
            with service().uow() as uow:
                if volunteer is None:
                    made = service_layer.register_volunteer(uow, current_actor(), profile,
                                                            render=lambda v: {"id": str(v.id)})
                    return redirect(f"/roster/{made.body['id']}", 303)
                service_layer.update_volunteer(uow, current_actor(), volunteer.id, profile)
                return redirect(f"/roster/{volunteer.id}", 303)
        except Conflict as err:
            errors = FormErrors().add("phone", LABELS["phone"], str(err))
        except Invalid as err:  # a check the community no longer has (retired while the form was open)
            errors = _form_errors(err, order, rules)
    return render("volunteer_form.html", rules, volunteer=volunteer, errors=errors, form=request.form), 422


def _visible(volunteer_id) -> Volunteer | None:
    """The volunteer, if the coordinator's community has them."""
    try:
        with service().uow() as uow:
            return service_layer.volunteer_tasks(uow, current_actor(), volunteer_id)[0]
    except NotFound:
        return None


def _no_such_volunteer():
    return render("volunteer.html", volunteer=None, tasks=[], today=clock.today(), errors=FormErrors(),
                  form=MultiDict()), 404


@blp.route("/roster")
@page_requires(*COORDINATORS)
def roster():
    """The community's volunteers by name, with the checks that have run out or soon will at the top."""
    status = request.args.get("status", "")
    today = clock.today()
    with service().uow() as uow:
        found = service_layer.roster(uow, current_actor(), today, status if status in VOLUNTEER_STATUSES else None)
    return render("roster.html", _rules(), volunteers=found.volunteers, tasks=found.tasks, attention=found.attention,
                  status=status, statuses=VOLUNTEER_STATUSES, today=today)


@blp.route("/roster/<uuid:volunteer_id>")
@page_requires(*COORDINATORS)
def volunteer_page(volunteer_id):
    """One volunteer: their profile, checks with dates, and the tasks they took."""
    return _volunteer_page(volunteer_id)


def _volunteer_page(volunteer_id, errors: FormErrors | None = None, form: MultiDict | None = None, status: int = 200):
    try:
        with service().uow() as uow:
            volunteer, tasks = service_layer.volunteer_tasks(uow, current_actor(), volunteer_id)
            record = service_layer.volunteer_record(uow, current_actor(), volunteer_id, clock.utcnow())
    except NotFound:
        return _no_such_volunteer()
    place = all_communities().get(volunteer.community)
    return render("volunteer.html", _rules(), volunteer=volunteer, tasks=tasks, today=clock.today(), record=record,
                  activity_labels=ACTIVITY_LABELS, interval=place.wellbeing_interval_days if place else 91,
                  low=place.wellbeing_low_score if place else 2,
                  errors=errors or FormErrors(), form=form or MultiDict()), status


@blp.route("/roster/new", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def new_volunteer():
    """Add a volunteer by the form: every problem shown at once, beside its field, and nothing kept until all is
    right."""
    return _volunteer_form()


@blp.route("/roster/<uuid:volunteer_id>/edit", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def edit_volunteer(volunteer_id):
    """Change a volunteer's details; checks left empty stay as they are."""
    volunteer = _visible(volunteer_id)
    return _no_such_volunteer() if volunteer is None else _volunteer_form(volunteer)


@blp.route("/roster/<uuid:volunteer_id>/status", methods=["POST"])
@page_requires(*COORDINATORS)
def change_status(volunteer_id):
    """Pause, resume, or (after the confirmation page) record that a volunteer left."""
    status = request.form.get("status", "")
    if status not in VOLUNTEER_STATUSES:
        return _volunteer_page(volunteer_id, FormErrors().add("status", "Status", "Choose pause, resume or left."),
                               status=422)
    try:
        with service().uow() as uow:
            service_layer.update_volunteer(uow, current_actor(), volunteer_id, {"status": status})
    except NotFound:
        return _no_such_volunteer()
    return redirect(f"/roster/{volunteer_id}", 303)


@blp.route("/roster/<uuid:volunteer_id>/leave")
@page_requires(*COORDINATORS)
def confirm_leaving(volunteer_id):
    """Ask before recording that a volunteer left: they are offered nothing more."""
    volunteer = _visible(volunteer_id)
    if volunteer is None:
        return _no_such_volunteer()
    return render("volunteer_leave.html", volunteer=volunteer)


@blp.route("/roster/<uuid:volunteer_id>/checks", methods=["POST"])
@page_requires(*COORDINATORS)
def record_check(volunteer_id):
    """Record a check or training done (a renewal replaces the check of the same kind); without an expiry date, it
    expires as the community's check lasts."""
    given = {name: request.form[name] for name in ("check", "done_on", "expires_on") if request.form.get(name)}
    try:
        check = CheckIn().load(given)
    except ValidationError as err:
        return _volunteer_page(volunteer_id, FormErrors(err.messages, LABELS), request.form, 422)
    try:
        with service().uow() as uow:
            service_layer.update_volunteer(uow, current_actor(), volunteer_id, {"checks": [check]})
    except NotFound:
        return _no_such_volunteer()
    except Invalid as err:
        return _volunteer_page(volunteer_id, FormErrors(err.messages, LABELS, lambda field: field.rsplit(".", 1)[-1]),
                               request.form, 422)
    return redirect(f"/roster/{volunteer_id}#checks", 303)


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


TEMPLATE_ROW = {"name": "Jo Example", "phone": "07911 123456", "postcode": "FY1 1AA", "max_distance_km": "8",
                "skills": "practical; companionship", "languages": "en", "availability": "mon morning; thu afternoon",
                "weekly_cap": "2", "safeguarding_done": "05/01/2026", "safeguarding_expires": "05/01/2029"}


@blp.route("/roster/import/template.csv")
@page_requires(*COORDINATORS)
def import_template():
    """A spreadsheet to fill in: every column the import reads, and one example row to overwrite."""
    sheet = io.StringIO()
    writer = csv.DictWriter(sheet, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerow(TEMPLATE_ROW)
    return Response(sheet.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="volunteers-template.csv"'})


# --- a request's offers: who was asked, who accepted, and a coordinator's choices ---------------------------------

def _offers_page(request_id, errors: FormErrors | None = None, status: int = 200):
    """The request's offers and ranked candidates: the whole page, or (`?part=1`) the section intake's request page
    takes in."""
    try:
        with service().uow() as uow:
            report = service_layer.explain_match(uow, current_actor(), request_id, service().settings.policy,
                                                 clock.utcnow(), rank=False)
            offers = sorted(report["offers"], key=lambda o: (o.occurrence, o.round, o.created_at))
            people = {o.id: (o.volunteer.name, o.volunteer.phone) for o in offers}
            matches = service_layer.befriending_of(uow, current_actor(), request_id, clock.utcnow())
    except NotFound:
        report, offers, people, matches = None, [], {}, []
    template = "offers_part.html" if request.args.get("part") else "offers.html"
    return render(template, report=report, offers=offers, people=people, request_id=request_id, matches=matches,
                  end_reasons=BEFRIENDING_END_REASONS,
                  errors=errors or FormErrors(), back=local_path(request.values.get("next"), f"/board/{request_id}")
                  ), (404 if report is None else status)


@blp.route("/offers/assigned")
@page_requires(*COORDINATORS)
def assigned_part():
    """Who holds each of the community's requests now, with their phone: a section intake's board takes in (one
    read for the whole board) and puts on each request's row."""
    with service().uow() as uow:
        rows = service_layer.assigned(uow, current_actor())
    return render("assigned_part.html", rows=rows), 200, {"Cache-Control": "no-store"}


@blp.route("/offers/<uuid:request_id>")
@page_requires(*COORDINATORS)
def offers_page(request_id):
    """Who was offered a request and when each text went, who accepted (with name and phone), and the candidates
    a coordinator can assign, in order, with their reasons."""
    return _offers_page(request_id)


def _decided(request_id, decide) -> Any:
    """Run a coordinator's choice; back to the page they came from, or this page with what stopped it."""
    try:
        with service().uow() as uow:
            decide(uow)
    except (Conflict, NotFound) as err:
        return _offers_page(request_id, FormErrors().add("decision", "This request", str(err)), 409)
    return redirect(local_path(request.form.get("next"), f"/offers/{request_id}"), 303)


@blp.route("/offers/<uuid:request_id>/assign", methods=["POST"])
@page_requires(*COORDINATORS)
def assign_volunteer(request_id):
    """Give the task to the candidate the coordinator chose."""
    try:
        volunteer_id = uuid.UUID(request.form.get("volunteer_id", ""))
    except ValueError:
        return _offers_page(request_id, FormErrors().add("decision", "Volunteer", "Choose a volunteer."), 422)
    return _decided(request_id, lambda uow: service_layer.assign(
        uow, current_actor(), request_id, volunteer_id, service().settings.policy, clock.utcnow()))


@blp.route("/offers/<uuid:request_id>/rerun", methods=["POST"])
@page_requires(*COORDINATORS)
def rerun_matching(request_id):
    """Ask again from the first round (an unmatched request, after a volunteer joined or came back)."""
    return _decided(request_id, lambda uow: service_layer.rerun(uow, current_actor(), request_id,
                                                                service().settings.policy, clock.utcnow()))


@blp.route("/offers/<uuid:request_id>/done", methods=["POST"])
@page_requires(*COORDINATORS)
def mark_done(request_id):
    """Record that the volunteer did the task, with their hours, when they tell the coordinator rather than text."""
    try:
        done = DoneIn().load({"hours": as_number(request.form["hours"])} if request.form.get("hours") else {})
    except ValidationError as err:
        return _offers_page(request_id, FormErrors(err.messages, {"hours": "Hours"}), 422)
    return _decided(request_id, lambda uow: service_layer.complete_for_volunteer(
        uow, current_actor(), request_id, done["hours"], service().settings.policy, clock.utcnow()))



@blp.route("/offers/<uuid:request_id>/befriending/<uuid:match_id>/end", methods=["POST"])
@page_requires(*COORDINATORS)
def end_befriending(request_id, match_id):
    """End a befriending match with the reason the coordinator chose (the volunteer is thanked)."""
    reason = request.form.get("reason", "")
    if reason not in BEFRIENDING_END_REASONS:
        return _offers_page(request_id, FormErrors().add("reason", "Why it ends", "Choose why the match ends."), 422)
    return _decided(request_id, lambda uow: service_layer.end_befriending(uow, current_actor(), match_id, reason,
                                                                          clock.utcnow()))


# --- applying to volunteer (public, no sign-in) and the coordinators' pipeline ----------------------------------

APPLY_LABELS = {"name": "Your name", "phone": "Mobile phone", "postcode": "Postcode",
                "kinds": "What you would like to do", "consent": "Consent"}
KIND_CHOICES = [(kind, KINDS[kind].label) for kind in OFFERED_KINDS]


def _join_page(place, errors: FormErrors | None = None, form: MultiDict | None = None, status: int = 200):
    return render_template("join.html", place=place, kinds=KIND_CHOICES, consent=CONSENT,
                           errors=errors or FormErrors(), form=form or MultiDict()), status


def _community_page(slug: str):
    """The community of a public page, or None."""
    return all_communities().get(slug)


@blp.route("/join/<slug>", methods=["GET", "POST"])
def join(slug):
    """Apply to volunteer with a community: no sign-in. Every problem is shown beside its field; a filled honeypot
    is thanked and nothing kept; the 11th application from one address in an hour is refused (429), nothing kept."""
    place = _community_page(slug)
    if place is None:
        return render_template("join_thanks.html", place=None, refused=None), 404
    if request.method == "GET":
        return _join_page(place)
    data: dict[str, Any] = {"community": place.slug, "kinds": request.form.getlist("kinds"),
                            "consent": request.form.get("consent") == "yes",
                            "website": request.form.get("website", "")}
    for name in ("name", "phone", "postcode"):  # an empty one is left out: "... is needed"
        if value := request.form.get(name, "").strip():
            data[name] = value
    try:
        application = ApplicationIn().load(data)
    except ValidationError as err:
        return _join_page(place, FormErrors(err.messages, APPLY_LABELS), request.form, 422)
    try:
        take_application(application)
    except TooManyApplications as err:
        return (render_template("join_thanks.html", place=place, refused=str(err)), 429,
                {"Retry-After": str(RETRY_AFTER_SECONDS)})
    return redirect(f"/join/{place.slug}/thanks", 303)


@blp.route("/join/<slug>/thanks")
def join_thanks(slug):
    """Thank you: what happens next."""
    place = _community_page(slug)
    return render_template("join_thanks.html", place=place, refused=None), (200 if place else 404)


def _wait_text(waited) -> str:
    """How long someone has waited, as a coordinator says it."""
    days = waited.days
    if days >= 1:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = int(waited.total_seconds() // 3600)
    return f"{hours} hour{'s' if hours != 1 else ''}" if hours else "under an hour"


def _board_context(applicants: list) -> dict[str, Any]:
    now = clock.utcnow()
    days = {slug: all_communities()[slug].applicant_wait_days for slug in {a.community for a in applicants}}
    rows = [{"applicant": a, "waited": _wait_text(a.waited(now)),
             "too_long": a.waiting_too_long(now, days[a.community]),
             "kinds": ", ".join(KINDS[k].label for k in a.kinds if k in KINDS)} for a in applicants]
    return {"rows": rows, "stages": STAGE_NAMES}


@blp.route("/applicants/board")
@page_requires(*COORDINATORS)
def applicants_board():
    """The community's applicants at each stage, longest waiting first, with how long each has waited (marked when
    longer than the community allows)."""
    with service().uow() as uow:
        found = service_layer.applicants(uow, current_actor())
    return render("applicants.html", **_board_context(found))


def _applicant_page(applicant_id, errors: FormErrors | None = None, form: MultiDict | None = None, status: int = 200):
    try:
        with service().uow() as uow:
            found = service_layer.applicant(uow, current_actor(), applicant_id)
            context = _board_context([found])["rows"][0]
    except NotFound:
        return render("applicant.html", applicant=None, errors=FormErrors(), form=MultiDict()), 404
    return render("applicant.html", applicant=found, row=context, stages=STAGE_NAMES, leaving=LEAVING,
                  errors=errors or FormErrors(), form=form or MultiDict()), status


@blp.route("/applicants/<uuid:applicant_id>")
@page_requires(*COORDINATORS)
def applicant_page(applicant_id):
    """One applicant: what they gave, their stages (who moved them and when), and the next move."""
    return _applicant_page(applicant_id)


@blp.route("/applicants/<uuid:applicant_id>/move", methods=["POST"])
@page_requires(*COORDINATORS)
def move_applicant(applicant_id):
    """Move an applicant to the next stage, or withdraw or decline them with a reason (the page's form; the API's
    is POST /applicants/<id>/stage)."""
    given = {"stage": request.form.get("stage", ""), "reason": request.form.get("reason", "").strip() or None}
    try:
        move = StageIn().load(given)
    except ValidationError as err:
        return _applicant_page(applicant_id, FormErrors(err.messages, {"stage": "Stage", "reason": "Reason"}),
                               request.form, 422)
    try:
        with service().uow() as uow:
            moved = service_layer.move_applicant(uow, current_actor(), applicant_id, move["stage"], clock.utcnow(),
                                                 move.get("reason"))
    except NotFound:
        return _applicant_page(applicant_id)
    except Conflict as err:
        return _applicant_page(applicant_id, FormErrors().add("stage", "Stage", str(err)), request.form, 409)
    if moved.volunteer_id is not None:
        return redirect(f"/roster/{moved.volunteer_id}", 303)
    return redirect(f"/applicants/{applicant_id}", 303)


# --- training sessions --------------------------------------------------------------------------------------------

SESSION_LABELS = {"topic": "Topic", "starts_at": "Starts", "place": "Place", "online": "Online", "trainer": "Trainer",
                  "capacity": "Number of places", "grants": "Attending grants", "public": "Public session",
                  "phone": "Mobile phone", "name": "Name", "invitations": "Who attended", "invite": "Who to invite"}


def _session_of(form: MultiDict) -> dict[str, Any]:
    """The schedule form as the body POST /training/sessions takes: the time given in the community's clocks."""
    data: dict[str, Any] = {name: form.get(name, "").strip() for name in ("topic", "place", "trainer")}
    data["online"] = form.get("online") == "yes"
    data["place"] = data["place"] or None
    data["grants"] = form.get("grants") or None
    data["public"] = form.get("public") or None
    if capacity := form.get("capacity", "").strip():
        data["capacity"] = as_number(capacity)
    if starts := form.get("starts_at", "").strip():
        try:
            moment = datetime.fromisoformat(starts)
            data["starts_at"] = (moment if moment.tzinfo else moment.replace(
                tzinfo=all_communities()[current_actor().community].zone)).isoformat()
        except ValueError:
            data["starts_at"] = starts  # the schema says what is wrong with it
    return data


def _sessions_page(errors: FormErrors | None = None, form: MultiDict | None = None, status: int = 200):
    rules = _rules()
    with service().uow() as uow:
        found = service_layer.training_sessions(uow, current_actor())
        return render("training.html", rules, sessions=found, errors=errors or FormErrors(), form=form or MultiDict(),
                      public_topics=PUBLIC_TOPICS), status


@blp.route("/training", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def training_sessions():
    """The community's training sessions, soonest first, and the form to schedule one (the API's is
    POST /training/sessions)."""
    if request.method == "GET":
        return _sessions_page()
    try:
        details = SessionIn().load(_session_of(request.form))
    except ValidationError as err:
        return _sessions_page(FormErrors(err.messages, SESSION_LABELS), request.form, 422)
    try:
        with service().uow() as uow:
            made = service_layer.schedule_session(uow, current_actor(), details, clock.utcnow())
    except Invalid as err:  # a check the community does not have
        return _sessions_page(FormErrors(err.messages, SESSION_LABELS), request.form, 422)
    return redirect(f"/training/{made.id}", 303)


def _session_page(session_id, errors: FormErrors | None = None, form: MultiDict | None = None, status: int = 200):
    try:
        with service().uow() as uow:
            found = service_layer.training_session(uow, current_actor(), session_id)
            applicants_, volunteers = service_layer.invitable(uow, current_actor(), found)
            return render("training_session.html", uow.checks.rules(found.community), training=found,
                          applicants=applicants_, volunteers=volunteers,
                          statuses=INVITATION_NAMES, stages=STAGE_NAMES, public_topics=PUBLIC_TOPICS,
                          errors=errors or FormErrors(), form=form or MultiDict()), status
    except NotFound:
        return render("training_session.html", training=None, errors=FormErrors(), form=MultiDict()), 404


@blp.route("/training/<uuid:session_id>")
@page_requires(*COORDINATORS)
def training_session(session_id):
    """One session: who is invited and their answers (invited, accepted, on the waiting list, declined), who
    attended, who else may be invited, and the forms to invite and record attendance."""
    return _session_page(session_id)


def _ids(form: MultiDict, name: str) -> list[uuid.UUID]:
    """The ticked ids of a list of checkboxes (any that is not an id is left out)."""
    found = []
    for value in form.getlist(name):
        try:
            found.append(uuid.UUID(value))
        except ValueError:
            continue
    return found


@blp.route("/training/<uuid:session_id>/invite", methods=["POST"])
@page_requires(*COORDINATORS)
def invite_to_training(session_id):
    """Invite the ticked applicants and volunteers (each is texted), or add a member of the public to a public
    session (the API's is POST /training/sessions/<id>/invitations)."""
    applicant_ids, volunteer_ids, people = _ids(request.form, "applicants"), _ids(request.form, "volunteers"), []
    if "phone" in request.form:
        try:
            people = [PublicPersonIn().load({"phone": request.form.get("phone", "").strip(),
                                       "name": request.form.get("name", "").strip() or None})]
        except ValidationError as err:
            return _session_page(session_id, FormErrors(err.messages, SESSION_LABELS), request.form, 422)
    elif not applicant_ids and not volunteer_ids:
        return _session_page(session_id, FormErrors().add("invite", SESSION_LABELS["invite"],
                                                          "Tick at least one person to invite."), request.form, 422)
    try:
        with service().uow() as uow:
            service_layer.invite(uow, current_actor(), session_id, clock.utcnow(), applicant_ids, volunteer_ids,
                                 people)
    except NotFound:
        return _session_page(session_id)
    except Conflict as err:
        return _session_page(session_id, FormErrors().add("invite", SESSION_LABELS["invite"], str(err)),
                             request.form, 409)
    return redirect(f"/training/{session_id}", 303)


@blp.route("/training/<uuid:session_id>/attendance", methods=["POST"])
@page_requires(*COORDINATORS)
def record_training_attendance(session_id):
    """Record who attended (the ticked invitations): each gets the check the session grants (the API's is
    POST /training/sessions/<id>/attendance)."""
    ticked = _ids(request.form, "invitations")
    if not ticked:
        return _session_page(session_id, FormErrors().add("invitations", SESSION_LABELS["invitations"],
                                                          "Tick who attended."), request.form, 422)
    try:
        with service().uow() as uow:
            service_layer.record_attendance(uow, current_actor(), session_id, ticked, clock.utcnow(),
                                            service().settings.secret_key)
    except NotFound:
        return _session_page(session_id)
    except Conflict as err:
        return _session_page(session_id, FormErrors().add("invitations", SESSION_LABELS["invitations"], str(err)),
                             request.form, 409)
    return redirect(f"/training/{session_id}", 303)
# --- a community's checks and training: its administrators define them -----------------------------------------

ADMINS = ("admin",)
CHECK_TYPE_LABELS = {"key": "Key", "name": "Name", "evidence": "Evidence seen", "lasts_months": "Lasts (months)",
                     "retired": "Retired"}


def _check_type_data(form: MultiDict, fields: tuple[str, ...], whole: bool = False) -> dict[str, Any]:
    """A check type's form as the API's body: empty fields left out (`whole`: kept, as a change to them), except an
    empty life (it does not expire)."""
    data: dict[str, Any] = {}
    for name in fields:
        value = form.get(name, "").strip()
        if name == "lasts_months":
            data[name] = as_number(value) if value else None
        elif name == "retired":
            data[name] = form.get(name) == "yes"
        elif value or whole:
            data[name] = value
    return data


def _facts_text(facts: dict[str, Any] | None, rules: CheckRules) -> str:
    """What a change's before or after said, in words."""
    if facts is None:
        return "(none)"
    if "checks" in facts:
        return ", ".join(rules.name(c) for c in facts["checks"]) or "no checks"
    lasts = f"lasts {facts['lasts_months']} months" if facts.get("lasts_months") else "does not expire"
    evidence = f"; evidence: {facts['evidence']}" if facts.get("evidence") else ""
    return f"{facts['name']}{evidence}; {lasts}{'; retired' if facts.get('retired') else ''}"


def _change_rows(view: service_layer.CheckRulesView) -> list[dict[str, Any]]:
    """The audit trail as the page shows it: when, who, what, before and after."""
    rows = []
    for change in view.changes:
        what, _, key = change.subject.partition(":")
        subject = (f"Checks needed for {KINDS[key].label.lower()}" if what == "requirement" and key in KINDS
                   else f"Check {view.rules.name(key)} ({key})")
        rows.append({"at": change.at, "actor": change.actor, "role": change.role, "subject": subject,
                     "before": _facts_text(change.before, view.rules),
                     "after": _facts_text(change.after, view.rules)})
    return rows


def _checks_page(add_errors: FormErrors | None = None, add_form: MultiDict | None = None,
                 requires_errors: FormErrors | None = None, requires_form: MultiDict | None = None,
                 status: int = 200):
    """The community's checks, which kinds of help need which, and the changes made: each form with its own
    problems beside its fields, and what was typed kept."""
    with service().uow() as uow:
        view = service_layer.check_rules(uow, current_actor())
    if requires_form is None:
        requires_form = MultiDict()
        for kind in OFFERED_KINDS:
            requires_form.setlist(f"requires.{kind}", list(view.rules.needed(kind)))
    return render("check_rules.html", view.rules, view=view, community_name=all_communities()[view.community].name,
                  changes=_change_rows(view), offered=[(k, KINDS[k].label) for k in OFFERED_KINDS],
                  add_errors=add_errors or FormErrors(), add_form=add_form or MultiDict(),
                  requires_errors=requires_errors or FormErrors(), requires_form=requires_form), status


@blp.route("/roster/checks", methods=["GET", "POST"])
@page_requires(*ADMINS)
def check_types():
    """The community's checks and training; a post adds one (key, name, evidence, how long it lasts)."""
    if request.method == "GET":
        return _checks_page()
    try:
        data = CheckTypeIn().load(_check_type_data(request.form, ("key", "name", "evidence", "lasts_months")))
        with service().uow() as uow:
            service_layer.add_check_type(uow, current_actor(), data, clock.utcnow())
    except (ValidationError, Invalid) as err:
        return _checks_page(add_errors=FormErrors(err.messages, CHECK_TYPE_LABELS), add_form=request.form, status=422)
    return redirect("/roster/checks#check-types", 303)


@blp.route("/roster/checks/requirements", methods=["POST"])
@page_requires(*ADMINS)
def set_requirements():
    """Which checks each kind of help needs: every kind's ticked checks, saved at once (each change audited)."""
    wanted = {kind: request.form.getlist(f"requires.{kind}") for kind in OFFERED_KINDS}
    try:
        with service().uow() as uow:
            service_layer.set_requirements(uow, current_actor(), wanted, clock.utcnow())
    except Invalid as err:
        labels = {f"requires.{kind}": KINDS[kind].label for kind in OFFERED_KINDS}
        return _checks_page(requires_errors=FormErrors(err.messages, labels), requires_form=request.form, status=422)
    return redirect("/roster/checks#requirements", 303)


@blp.route("/roster/checks/<key>", methods=["GET", "POST"])
@page_requires(*ADMINS)
def check_type(key):
    """Rename one check, change its evidence or how long it lasts, or retire it (or bring it back)."""
    rules = _rules()
    current = rules.types.get(key)
    if current is None:
        return render("check_type.html", rules, check_type=None, errors=FormErrors(), form=MultiDict()), 404
    if request.method == "GET":
        form = MultiDict({"name": current.name, "evidence": current.evidence,
                          "lasts_months": str(current.lasts_months or ""), "retired": "yes" if current.retired else ""})
        return render("check_type.html", rules, check_type=current, errors=FormErrors(), form=form)
    try:
        data = CheckTypePatch().load(_check_type_data(request.form, ("name", "evidence", "lasts_months", "retired"),
                                                      whole=True))
        with service().uow() as uow:
            service_layer.change_check_type(uow, current_actor(), key, data, clock.utcnow())
    except (ValidationError, Invalid) as err:
        return render("check_type.html", rules, check_type=current, errors=FormErrors(err.messages, CHECK_TYPE_LABELS),
                      form=request.form), 422
    return redirect("/roster/checks#check-types", 303)
