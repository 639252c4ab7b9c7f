"""A coordinator's pages: sign in, the requests board, the request form, a request with its timeline, and a
person's record across their requests."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from flask import redirect, render_template, request, session
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.datastructures import MultiDict

from services.intake import service_layer
from services.intake.adapters import passwords
from services.intake.domain import (MONITORING_ANSWERS, AlreadyDied, NotAnAnswer, NotFound, NotLinkable,
                                    NotMergeable, NotOpen, OrganisationExists, SameOrganisation, SupportRequest,
                                    TooManySignIns)
from services.intake.entrypoints import concerns, directory
from services.intake.entrypoints.api import DeathIn, MonitoringIn, ReferralIn, RequestIn, RequestPatch
from shared import equity, gazetteer
from shared.auth import HOMES, local_path
from shared.clock import utcnow
from shared.communities import all_communities, get as community
from shared.taxonomy import (DAYS, GENDERS, KINDS, LANGUAGES, OPEN_REQUEST_STATUSES, ORGANISATION_TYPES, PARTS_OF_DAY,
                             REQUEST_STATUSES, URGENCIES)
from shared.web import (FormErrors, Pages, Text, claims_for, client_address, current_actor, local_time, page_requires,
                        service)

blp = Pages("pages", __name__, description="Coordinators' pages")
COORDINATORS = ("coordinator", "admin")
BOARD_ROWS = 200  # the board shows the first rows of the list, with no pages
LABELS = {"person.name": "Name", "person.phone": "Phone", "person.postcode": "Postcode", "support_type": "Kind of help",
          "when.start": "From", "when.end": "Until", "when": "When", "when.days": "Days",
          "when.part_of_day": "Part of the day", "repeat.occurrences": "How many times", "consent": "Consent",
          "befriending.rhythm": "Befriending visits", "befriending.review_on": "Review the match on"}


def when(r: SupportRequest) -> str:
    """A request's window in words."""
    if r.window_start:
        text = f"{local_time(r.window_start)}–{local_time(r.window_end)[-5:]}"
    else:
        text = f"{', '.join(d.title() for d in r.window_days or [])} {r.window_part or ''}".strip()
    if r.repeat_every_weeks:
        every = "every week" if r.repeat_every_weeks == 1 else f"every {r.repeat_every_weeks} weeks"
        text += f", {every}, {r.repeat_occurrences} times"
    if r.befriending:
        review = date.fromisoformat(r.befriending["review_on"])
        text += f"; befriending, {r.befriending['rhythm']}, review on {review.day} {review:%b %Y}"
    return text


def render(template: str, **context: Any):
    """Render a page with what every intake page uses."""
    return render_template(template, kinds=KINDS, statuses=REQUEST_STATUSES, urgencies=URGENCIES, when=when,
                           open_statuses=OPEN_REQUEST_STATUSES, days=DAYS, parts_of_day=PARTS_OF_DAY,
                           languages=LANGUAGES, **CHOICES, **context)


# What the request form's lists offer, as (value, text).
CHOICES = {"kind_choices": [(key, kind.label) for key, kind in KINDS.items()],
           "urgency_choices": [(u, u.capitalize()) for u in URGENCIES],
           "day_choices": [(d, d.title()) for d in DAYS],
           "part_choices": [(p, p.capitalize()) for p in PARTS_OF_DAY],
           "gender_choices": [(g, g.capitalize()) for g in GENDERS]}


@blp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with email and password; the session works on every service behind the front door."""
    next_path = local_path(request.values.get("next"), "")  # none: the signed-in role's own home
    if request.method == "GET":
        return render("login.html", next=next_path, email="")
    email = request.form.get("email", "").strip().lower()
    try:
        user = service_layer.sign_in(service().uow(), passwords, email, request.form.get("password", ""),
                                     client_address())
    except TooManySignIns as err:
        return (render("login.html", next=next_path, email=email, error=str(err)), 429,
                {"Retry-After": str(err.retry_after)})
    if user is None:
        return render("login.html", next=next_path, email=email, error="That email and password do not match."), 401
    session.clear()
    session["user"] = claims_for(user.email, user.role, user.communities, user.organisation)
    return redirect(next_path or HOMES[user.role])


@blp.route("/logout", methods=["POST"])
def logout():
    """Sign out."""
    session.clear()
    return redirect(local_path(request.values.get("next"), "/login"))


@blp.route("/board")
@page_requires(*COORDINATORS)
def board():
    """The community's requests: those needing a coordinator first, each with why in plain words (nobody found,
    given back, offers about to time out, SMS waiting in the inbox, urgent with nobody yet), then the rest,
    unmatched and urgent first; with filters and search. Above them, how many applicants to volunteer have waited
    too long, where any have."""
    chosen = {name: request.args.get(name, "") for name in ("status", "support_type", "urgency")}
    filters = {name: value for name, value in chosen.items() if value}
    search = request.args.get("q", "")[:100]
    now = utcnow()
    latest = service_layer.latest_change(service().uow(), current_actor(), now)
    rows = service_layer.list_requests(service().uow(), current_actor(), filters,
                                       service_layer.Page(page_size=BOARD_ROWS), search, now)
    needing = [(r, reasons) for r in rows if (reasons := r.needs_you(now))]
    rest = [r for r in rows if not r.needs_you(now)]
    applicants = [(all_communities()[slug].name if slug in all_communities() else slug, waiting, days)
                  for slug, waiting, days in service_layer.waiting_applicants(service().uow(), current_actor())]
    return render("board.html", needing=needing, rest=rest, chosen=chosen, search=search, latest=latest,
                  applicants=applicants)


@blp.route("/board/latest")
@page_requires(*COORDINATORS)
def board_latest():
    """A mark that moves when the board would change (a request changed, or offers came close to timing out): the
    open board looks every second and reloads its rows only when this moves (no names, so it is not audited
    as a listing is)."""
    latest = service_layer.latest_change(service().uow(), current_actor(), utcnow())
    return {"latest": latest}, 200, {"Cache-Control": "no-store"}


CHECKBOXES = ("consent.share_contact", "consent.sms_contact", "person.is_carer", "preferences.pets",
              "preferences.smoking")
WHOLE_NUMBERS = ("repeat.every_weeks", "repeat.occurrences")
# Which fields the form's "when" choice keeps: a one-off window, or days and a part of the day.
WINDOW_FIELDS = {"once": ("when.start", "when.end"), "flexible": ("when.days", "when.part_of_day")}


def nested(form) -> dict[str, Any]:
    """Form fields named like `person.name` as the nested JSON the API takes; times in the community's zone."""
    zone = community(current_actor().community).zone
    data: dict[str, Any] = {"consent": {"share_contact": False, "sms_contact": False}}
    chosen = form.get("when.kind", "once")
    dropped = {name for kind, names in WINDOW_FIELDS.items() if kind != chosen for name in names}
    for name in form:
        value: Any = form.getlist(name) if name == "when.days" else form.get(name)
        if name in ("csrf_token", "when.kind") or name in dropped or value in ("", []):
            continue
        if name in ("when.start", "when.end"):
            try:
                value = datetime.fromisoformat(value).replace(tzinfo=zone).isoformat()
            except ValueError:
                pass
        if name in CHECKBOXES:
            value = True
        if name in WHOLE_NUMBERS and value.strip().isdigit():
            value = int(value)  # the API takes numbers as JSON numbers
        head, _, tail = name.partition(".")
        if tail:
            data.setdefault(head, {})[tail] = value
        else:
            data[name] = value
    if "repeat" in data and "every_weeks" not in data["repeat"]:
        del data["repeat"]  # "how many times" without "how often" is a one-off
    if "befriending" in data and "rhythm" not in data["befriending"]:
        del data["befriending"]  # a review date without a rhythm is not befriending
    return data


SIGNPOST_FIELD = "signpost_to"  # the request form's "Or point them to a service instead"
SIGNPOST_LABEL = "Or point them to a service instead"


def signpost_options(form) -> list[tuple[Any, float | None]]:
    """The community's active directory entries the request form offers instead of volunteers: nearest the
    postcode the form gives first (with how far), by name when it gives none or one not known."""
    try:
        near = directory.place_of(form.get("person.postcode", "").strip())
    except gazetteer.UnknownPostcode:
        near = None
    return service_layer.directory(service().uow(), current_actor(), None, near)


def with_signpost(form, schema: Schema, labels: dict[str, str]) -> tuple[dict[str, Any], uuid.UUID | None,
                                                                          FormErrors]:
    """The request form's answers as `schema` loads them, and the directory entry chosen instead of volunteers
    (None: ask them), with every problem of both at once. An entry not among the community's active ones (another
    community's, a retired one) is a problem of the choice."""
    chosen, choice_problem = form.get(SIGNPOST_FIELD, "").strip(), None
    entry_id = None
    if chosen:
        try:
            entry_id = uuid.UUID(chosen)
        except ValueError:
            entry_id = None
        if entry_id is None or entry_id not in {entry.id for entry, _ in service_layer.directory(
                service().uow(), current_actor())}:
            entry_id, choice_problem = None, "Choose a service from the list, or none to ask volunteers."
    answers = MultiDict(form)
    answers.poplist(SIGNPOST_FIELD)
    data, errors = {}, FormErrors()
    try:
        data = schema.load(nested(answers))
    except ValidationError as err:
        errors = FormErrors(err.messages, labels)
    if choice_problem:
        errors.add(SIGNPOST_FIELD, SIGNPOST_LABEL, choice_problem)
    return data, entry_id, errors


def request_form(form, errors: FormErrors, **context: Any):
    """The request (or referral) form, offering the directory's entries instead of volunteers; for a carer of
    someone known (`cares_for`), naming them."""
    return render("request_form.html", form=form, errors=errors, r=None, signpost_field=SIGNPOST_FIELD,
                  signpost_label=SIGNPOST_LABEL, signpost_options=signpost_options(form),
                  cares_for=cared_for(form.get("cares_for", "")), **context)


def cared_for(chosen: str):
    """The record a carer's request names as the person they care for, if it is one the coordinator may see."""
    try:
        return service_layer.person_of(service().uow(), current_actor(), uuid.UUID(chosen))
    except (ValueError, NotFound):
        return None


@blp.route("/board/new", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def new_request():
    """The request form; a valid form logs the request and shows it. With a directory entry chosen instead of
    volunteers, the request is logged closed, signposted to it, and no volunteer is asked."""
    if request.method == "GET":  # ?cares_for=<person>: a request for one of their carers
        cares_for = request.args.get("cares_for", "")
        return request_form(MultiDict({"cares_for": cares_for, "person.is_carer": "1"} if cares_for else {}),
                            FormErrors())
    data, entry_id, errors = with_signpost(request.form, RequestIn(), LABELS)
    if errors:
        return request_form(request.form, errors), 422
    try:
        submitted = service_layer.submit_request(service().uow(), current_actor(), data, service().settings,
                                                 signpost_to=entry_id)
    except NotFound as err:  # retired since the form was shown: nothing was written
        return request_form(request.form, errors.add(SIGNPOST_FIELD, SIGNPOST_LABEL, str(err))), 422
    except NotLinkable as err:
        return request_form(request.form, errors.add("cares_for", "They care for", str(err))), 422
    return redirect(f"/board/{submitted.made.id}", 303)


@blp.route("/board/<uuid:request_id>")
@page_requires(*COORDINATORS)
def show_request(request_id):
    """A request with its timeline."""
    try:
        r = service_layer.get_request(service().uow(), current_actor(), request_id)
    except NotFound as err:
        abort(404, message=str(err))
    return render("request.html", r=r, suggestions=directory.suggestions(r), concerns=concerns.of_request(r),
                  signposted=service_layer.signposted_entry(service().uow(), current_actor(), r),
                  maybe=service_layer.maybe_same(service().uow(), current_actor(), r))


@blp.route("/board/<uuid:request_id>/same-person", methods=["POST"])
@page_requires(*COORDINATORS)
def same_person(request_id):
    """A coordinator says whether the request is for the person it may be for: the same (the records are merged,
    and the person's page shows it) or someone else."""
    answer = request.form.get("answer", "")
    if answer not in ("same", "different"):
        abort(422, message="Say whether it is the same person or a different one.")
    try:
        r = service_layer.same_person(service().uow(), current_actor(), request_id, answer == "same")
    except NotFound as err:
        abort(404, message=str(err))
    return redirect(f"/people/{r.person_id}" if answer == "same" else f"/board/{request_id}", 303)


# --- a person, across their requests ------------------------------------------------------------------------------

MERGE_LABELS = {"other": "The other record", "confirm": "Confirm"}


MONITORING_LABELS = {"consent": "They consent to equity monitoring", "age_band": "Age band", "sex": "Sex",
                     "ethnicity": "Ethnic group", "first_language": "First language", "disability": "Disability"}


def monitoring_choices(country: str) -> dict[str, list[tuple[str, str]]]:
    """What each monitoring question offers, in the community's country's categories, each with "Prefer not to
    say" last."""
    prefer = [(equity.PREFER_NOT, "Prefer not to say")]
    return {"age_band": [(band, band) for band in equity.AGE_BANDS] + prefer,
            "sex": list(equity.SEXES.items()) + prefer,
            "ethnicity": [(code, f"{equity.GROUP_NAMES.get(group, label)}: {label}" if group in equity.GROUP_NAMES
                           else label) for code, (label, group) in equity.ethnicities(country).items()] + prefer,
            "first_language": list(equity.FIRST_LANGUAGES.items()) + prefer,
            "disability": [("yes", "Yes"), ("no", "No")] + prefer}


def person_page(person_id, errors: FormErrors | None = None, form=None, status: int = 200,
                monitoring_errors: FormErrors | None = None):
    """A person's page: their details, requests, referrals, consents and timeline, and the merge form."""
    try:
        record = service_layer.get_person(service().uow(), current_actor(), person_id)
    except NotFound as err:
        abort(404, message=str(err))
    if record.person.id != person_id:
        return redirect(f"/people/{record.person.id}", 303)  # merged: the record it was merged into
    timeline = sorted(((t, r) for r in record.requests for t in r.timeline), key=lambda pair: pair[0].at,
                      reverse=True)
    others = [(str(p.id), f"{p.name}{', born ' + p.date_of_birth.isoformat() if p.date_of_birth else ''}"
                          f"{', ' + p.phone if p.phone else ''} (known since {p.created_at:%d %b %Y})")
              for p in record.others]
    find = request.args.get("find", "").strip()[:100]
    found = [p for p in service_layer.find_people(service().uow(), current_actor(), find)
             if p.id != record.person.id and p.id not in {c.id for c in record.carers}] if find else []
    answers = record.person.monitoring or {}
    monitoring_form = form if monitoring_errors else MultiDict(
        {name: answers.get(name) or "" for name in MONITORING_LABELS if name != "consent"}
        | ({"consent": "1"} if answers.get("consent") else {}))
    return render("person.html", record=record, p=record.person, timeline=timeline, others=others,
                  errors=errors or FormErrors(), form=form or MultiDict(), find=find, found=found,
                  monitoring=answers, monitoring_form=monitoring_form,
                  monitoring_errors=monitoring_errors or FormErrors(),
                  monitoring_choices=monitoring_choices(community(record.person.community).country)), status


@blp.route("/people/<uuid:person_id>")
@page_requires(*COORDINATORS)
def show_person(person_id):
    """A person's record: everything known of them across their requests."""
    return person_page(person_id)


@blp.route("/people/<uuid:person_id>/merge", methods=["POST"])
@page_requires(*COORDINATORS)
def merge_person(person_id):
    """Merge another record of the same person into this one, once the coordinator confirms it."""
    errors = FormErrors()
    chosen = request.form.get("other", "").strip()
    try:
        other = uuid.UUID(chosen)
    except ValueError:
        other = None
        errors.add("other", MERGE_LABELS["other"], "Choose the record that is the same person.")
    if not request.form.get("confirm"):
        errors.add("confirm", MERGE_LABELS["confirm"], "Tick to confirm they are the same person.")
    if not errors:
        try:
            service_layer.merge_people(service().uow(), current_actor(), person_id, other)
        except NotMergeable as err:
            errors.add("other", MERGE_LABELS["other"], str(err))
        except NotFound as err:
            abort(404, message=str(err))
    if errors:
        return person_page(person_id, errors, request.form, 422)
    return redirect(f"/people/{person_id}", 303)


@blp.route("/people/<uuid:person_id>/monitoring", methods=["POST"])
@page_requires(*COORDINATORS)
def record_monitoring(person_id):
    """Record the person's consent to equity monitoring and their answers (PUT /people/records/<id>/monitoring's
    schema and use case)."""
    data = {name: value for name in MONITORING_LABELS if name != "consent"
            and (value := request.form.get(name, "").strip())}
    data["consent"] = bool(request.form.get("consent"))
    try:
        loaded = MonitoringIn().load(data)
        service_layer.record_monitoring(service().uow(), current_actor(), person_id, loaded["consent"],
                                        {name: loaded[name] for name in MONITORING_ANSWERS}, service().settings)
    except ValidationError as err:
        return person_page(person_id, form=request.form, status=422,
                           monitoring_errors=FormErrors(err.messages, MONITORING_LABELS))
    except NotAnAnswer as err:
        return person_page(person_id, form=request.form, status=422, monitoring_errors=FormErrors().add(
            "ethnicity", MONITORING_LABELS["ethnicity"], str(err)))
    except NotFound as err:
        abort(404, message=str(err))
    return redirect(f"/people/{person_id}?monitoring=saved#monitoring", 303)


@blp.route("/people/<uuid:person_id>/death", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def record_death(person_id):
    """Record that a person died, after a page that says what will happen and asks the date."""
    try:
        record = service_layer.get_person(service().uow(), current_actor(), person_id)
    except NotFound as err:
        abort(404, message=str(err))
    if record.person.id != person_id or record.person.died_on is not None:
        return redirect(f"/people/{record.person.id}", 303)

    def page(form, errors, status=200):
        return render("person_death.html", p=record.person, record=record, form=form, errors=errors,
                      today=utcnow().date().isoformat()), status
    if request.method == "GET":
        return page(MultiDict(), FormErrors())
    try:
        died_on = DeathIn().load({"died_on": request.form.get("died_on", "")})["died_on"]
    except ValidationError as err:
        return page(request.form, FormErrors(err.messages, {"died_on": "The day they died"}), 422)
    try:
        service_layer.record_death(service().uow(), current_actor(), person_id, died_on, service().settings)
    except AlreadyDied:
        pass  # recorded meanwhile: their page says so
    return redirect(f"/people/{person_id}", 303)


@blp.route("/people/<uuid:person_id>/carers", methods=["POST"])
@page_requires(*COORDINATORS)
def link_carer(person_id):
    """Record that someone found on the person's page cares for them."""
    try:
        service_layer.link_carer(service().uow(), current_actor(), person_id, uuid.UUID(request.form.get("carer", "")))
    except ValueError:
        return person_page(person_id, FormErrors().add("find", "Find a carer", "Choose a record to link."),
                           status=422)
    except NotLinkable as err:
        return person_page(person_id, FormErrors().add("find", "Find a carer", str(err)), status=422)
    except NotFound as err:
        abort(404, message=str(err))
    return redirect(f"/people/{person_id}#carers", 303)


@blp.route("/people/<uuid:person_id>/carers/<uuid:carer_id>/remove", methods=["POST"])
@page_requires(*COORDINATORS)
def unlink_carer(person_id, carer_id):
    """Forget that someone cares for the person."""
    try:
        service_layer.unlink_carer(service().uow(), current_actor(), person_id, carer_id)
    except NotFound as err:
        abort(404, message=str(err))
    return redirect(f"/people/{person_id}#carers", 303)


def form_of(r: SupportRequest) -> MultiDict:
    """A request as its form shows it, to change: times in the community's zone, as the form's inputs take them."""
    zone = community(r.community).zone
    shown = lambda moment: moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")  # noqa: E731
    form = MultiDict({"person.name": r.person_name, "person.phone": r.person_phone or "", "person.address": r.address,
                      "person.postcode": r.postcode or r.area, "person.preferred_language": r.preferred_language,
                      "support_type": r.support_type, "urgency": r.urgency,
                      "when.kind": "once" if r.window_start else "flexible",
                      "coordinator_notes": r.coordinator_notes})
    if r.window_start:
        form.update({"when.start": shown(r.window_start), "when.end": shown(r.window_end)})
    else:
        form.setlist("when.days", list(r.window_days or []))
        form["when.part_of_day"] = r.window_part or ""
    if r.repeat_every_weeks:
        form.update({"repeat.every_weeks": str(r.repeat_every_weeks), "repeat.occurrences": str(r.repeat_occurrences)})
    for name, value in (r.preferences or {}).items():
        if value not in (None, "", False) and name != "befriending":
            form[f"preferences.{name}"] = "1" if value is True else str(value)
    for flag, on in (("person.is_carer", r.is_carer), ("consent.share_contact", r.consent("share_contact")),
                     ("consent.sms_contact", r.consent("sms_contact"))):
        if on:
            form[flag] = "1"
    return form


@blp.route("/board/<uuid:request_id>/edit", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def edit_request(request_id):
    """Change a request by its form; matching hears of the changes that matter to it."""
    try:
        r = service_layer.get_request(service().uow(), current_actor(), request_id)
    except NotFound as err:
        abort(404, message=str(err))
    if r.status not in OPEN_REQUEST_STATUSES:
        return redirect(f"/board/{request_id}", 303)  # an ended request is not changed; its page says why
    if request.method == "GET":
        return render("request_form.html", form=form_of(r), errors=FormErrors(), r=r)
    try:
        data = RequestPatch().load(nested(request.form))
    except ValidationError as err:
        return render("request_form.html", form=request.form, errors=FormErrors(err.messages, LABELS), r=r), 422
    service_layer.update_request(service().uow(), current_actor(), request_id, data, service().settings)
    return redirect(f"/board/{request_id}", 303)


@blp.route("/board/<uuid:request_id>/cancel", methods=["POST"])
@page_requires(*COORDINATORS)
def cancel_request(request_id):
    """Cancel a request from its page."""
    reason = request.form.get("reason", "").strip() or "Cancelled by a coordinator"
    try:
        service_layer.cancel_request(service().uow(), current_actor(), request_id, reason, service().settings)
    except NotFound as err:
        abort(404, message=str(err))
    except NotOpen:
        pass  # already ended: the page shows how
    return redirect(f"/board/{request_id}", 303)


# --- a referrer's pages -------------------------------------------------------------------------------------------


@blp.route("/my-referrals")
@page_requires("referrer")
def my_referrals():
    """A referrer's home: the referrals they made, newest first, each with where it has got to in plain words."""
    rows = service_layer.list_referrals(service().uow(), current_actor(), service_layer.Page(page_size=BOARD_ROWS))
    return render("referrals.html", rows=rows)


REFERRAL_LABELS = {**LABELS, "reason": "Why you are referring them", "referrer.organisation": "Your organisation",
                   "referrer.organisation_type": "Type of organisation", "referrer.name": "Your name",
                   "referrer.contact": "How the coordinators can reach you"}
REFERRER_TYPES = [("pcn", "Primary care network or GP practice"), ("social_prescriber", "Social prescribing"),
                      ("partner", "Hospice, charity, community group or council"),
                      ("health_system", "NHS or Ontario Health service")]


@blp.route("/my-referrals/new", methods=["GET", "POST"])
@page_requires("referrer")
def new_referral():
    """The referral form: the request form's questions, then why and who refers. A referrer whose account names
    their organisation refers for it (the form cannot change it)."""
    actor = current_actor()
    fixed = {"referrer.organisation": actor.organisation} if actor.organisation else {}
    registered = service_layer.organisation_named(service().uow(), actor, actor.organisation)
    if registered is not None:  # the register says what kind of organisation it is
        fixed["referrer.organisation_type"] = registered.source

    def page(form, errors):
        return request_form(form, errors, referral=True, organisation_fixed=bool(fixed),
                            organisation_types=REFERRER_TYPES, type_fixed="referrer.organisation_type" in fixed)
    if request.method == "GET":
        return page(MultiDict(fixed), FormErrors())
    form = MultiDict(request.form)
    for name, value in fixed.items():
        form[name] = value
    data, entry_id, errors = with_signpost(form, ReferralIn(), REFERRAL_LABELS)
    if errors:
        return page(form, errors), 422
    try:
        submitted = service_layer.submit_request(service().uow(), actor, data, service().settings,
                                                 source=data["referrer"]["organisation_type"], signpost_to=entry_id)
    except NotFound as err:  # retired since the form was shown: nothing was written
        return page(form, errors.add(SIGNPOST_FIELD, SIGNPOST_LABEL, str(err))), 422
    return redirect(f"/my-referrals/{submitted.made.id}", 303)


@blp.route("/my-referrals/<uuid:request_id>")
@page_requires("referrer")
def show_referral(request_id):
    """One of the referrer's referrals with its story; nothing of the volunteers."""
    try:
        r = service_layer.get_referral(service().uow(), current_actor(), request_id)
    except NotFound as err:
        abort(404, message=str(err))
    return render("referral.html", r=r, community_name=community(r.community).name,
                  signposted=service_layer.signposted_entry(service().uow(), current_actor(), r))


# --- an administrator's community ---------------------------------------------------------------------------------


@blp.route("/communities", methods=["GET", "POST"])
@page_requires("admin")
def choose_community():
    """An administrator's home: which of their communities they are working in. Every page then shows only that
    community (the session's scope narrows; the full list stays in the session to choose again)."""
    user = session["user"]
    choices = user.get("may_choose") or user["communities"]
    if request.method == "POST":
        chosen = request.form.get("community", "")
        if chosen not in choices:
            return render("communities.html", choices=choices, current=None, community_names=community_names(),
                          error="Choose one of your communities."), 422
        session["user"] = {**user, "communities": [chosen], "may_choose": choices}
        return redirect(local_path(request.form.get("next"), "/board"), 303)
    if len(choices) == 1 and "may_choose" not in user:
        return redirect("/board")  # one community: nothing to choose
    current = user["communities"][0] if len(user["communities"]) == 1 else None
    return render("communities.html", choices=choices, current=current, community_names=community_names(), error=None)


def community_names() -> dict[str, str]:
    """Each community's name, by slug."""
    return {slug: c.name for slug, c in all_communities().items()}


# --- the register of organisations (administrators) ---------------------------------------------------------------


class OrganisationIn(Schema):
    """An organisation as its form gives it."""

    name = Text(required=True, blank=False, validate=validate.Length(max=200))
    type = fields.Str(required=True, validate=validate.OneOf(sorted(ORGANISATION_TYPES),
                                                             error="Choose the kind of organisation."))
    adopted_on = fields.Date(load_default=None, allow_none=True, error_messages={"invalid": "Give a date."})
    webhook_url = fields.Url(load_default=None, allow_none=True, schemes={"https", "http"}, require_tld=False,
                             validate=validate.Length(max=500),
                             error_messages={"invalid": "Give a web address starting https://."})


ORGANISATION_LABELS = {"name": "Name", "type": "Kind of organisation",
                       "adopted_on": "Adopted a compassionate communities approach on",
                       "webhook_url": "Webhook address"}
ORGANISATION_CHOICES = [(key, label) for key, (label, _) in ORGANISATION_TYPES.items()]


def organisation_form(form: MultiDict, errors: FormErrors, organisation=None, deliveries=(), status=200):
    others = [] if organisation is None else [
        (str(o.id), o.name) for o in service_layer.list_organisations(service().uow(), current_actor())
        if o.community == organisation.community and o.id != organisation.id]
    return render("organisation.html", form=form, errors=errors, organisation=organisation, deliveries=deliveries,
                  organisation_types=ORGANISATION_CHOICES, others=others), status


def organisation_details(form) -> dict[str, Any]:
    """The form's answers as OrganisationIn takes them (an empty answer is none)."""
    return {name: form.get(name) or None for name in ("name", "type", "adopted_on", "webhook_url")}


@blp.route("/organisations")
@page_requires("admin")
def organisations():
    """The register of the community's organisations."""
    return render("organisations.html", rows=service_layer.list_organisations(service().uow(), current_actor()),
                  types=ORGANISATION_TYPES)


@blp.route("/organisations/new", methods=["GET", "POST"])
@page_requires("admin")
def new_organisation():
    """Add an organisation to the register."""
    if request.method == "GET":
        return organisation_form(MultiDict(), FormErrors())
    try:
        details = OrganisationIn().load(organisation_details(request.form))
        made = service_layer.add_organisation(service().uow(), current_actor(), details)
    except ValidationError as err:
        return organisation_form(request.form, FormErrors(err.messages, ORGANISATION_LABELS), status=422)
    except OrganisationExists as err:
        return organisation_form(request.form, FormErrors({"name": [str(err)]}, ORGANISATION_LABELS), status=422)
    return redirect(f"/organisations/{made.id}", 303)


@blp.route("/organisations/<uuid:organisation_id>", methods=["GET", "POST"])
@page_requires("admin")
def show_organisation(organisation_id):
    """An organisation's details to change, its webhook's secret, and what its webhook was last sent."""
    try:
        organisation, deliveries = service_layer.get_organisation(service().uow(), current_actor(), organisation_id)
    except NotFound as err:
        abort(404, message=str(err))
    if request.method == "GET":
        form = MultiDict({"name": organisation.name, "type": organisation.type,
                          "adopted_on": organisation.adopted_on.isoformat() if organisation.adopted_on else "",
                          "webhook_url": organisation.webhook_url or ""})
        return organisation_form(form, FormErrors(), organisation, deliveries)
    try:
        details = OrganisationIn().load(organisation_details(request.form))
        service_layer.change_organisation(service().uow(), current_actor(), organisation_id, details)
    except ValidationError as err:
        return organisation_form(request.form, FormErrors(err.messages, ORGANISATION_LABELS), organisation,
                                 deliveries, 422)
    except OrganisationExists as err:
        return organisation_form(request.form, FormErrors({"name": [str(err)]}, ORGANISATION_LABELS), organisation,
                                 deliveries, 422)
    return redirect(f"/organisations/{organisation_id}", 303)


ORGANISATION_MERGE_LABELS = {"duplicate": "The duplicate", "same": "They are the same organisation"}


@blp.route("/organisations/<uuid:organisation_id>/merge", methods=["POST"])
@page_requires("admin")
def merge_organisation(organisation_id):
    """Merge a duplicate (the same organisation entered again, or spelled another way) into this one, once the
    administrator confirms they are the same."""
    try:
        organisation, deliveries = service_layer.get_organisation(service().uow(), current_actor(), organisation_id)
    except NotFound as err:
        abort(404, message=str(err))
    form = MultiDict({"name": organisation.name, "type": organisation.type,
                      "adopted_on": organisation.adopted_on.isoformat() if organisation.adopted_on else "",
                      "webhook_url": organisation.webhook_url or "", "duplicate": request.form.get("duplicate", "")})
    errors = FormErrors()
    duplicate = request.form.get("duplicate", "")
    if not duplicate:
        errors.add("duplicate", ORGANISATION_MERGE_LABELS["duplicate"],
                   "Choose the organisation that is a duplicate of this one.")
    if request.form.get("same") != "yes":
        errors.add("same", ORGANISATION_MERGE_LABELS["same"],
                   "Tick this once you have checked they are the same organisation.")
    if not errors:
        try:
            service_layer.merge_organisations(service().uow(), current_actor(), uuid.UUID(duplicate),
                                              organisation_id)
        except (ValueError, NotFound, SameOrganisation):
            errors.add("duplicate", ORGANISATION_MERGE_LABELS["duplicate"],
                       "Choose another organisation of this community.")
    if errors:
        return organisation_form(form, errors, organisation, deliveries, 422)
    return redirect(f"/organisations/{organisation_id}?merged=1", 303)