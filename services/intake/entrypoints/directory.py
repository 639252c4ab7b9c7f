"""The signposting directory's pages and API: find a service by need and by distance from a postcode, add, change
and retire entries, import an Open Referral UK / HSDS JSON file or a CSV sheet; and signposting a request to one."""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, request
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from werkzeug.datastructures import MultiDict

from services.intake import service_layer
from services.intake.directory import DirectoryProblem, read_file, template_csv
from services.intake.domain import IntakeError, NotFound, NotOpen, NotSignpostable, SupportRequest
from shared import gazetteer
from shared.taxonomy import KINDS
from shared.web import (Blueprint, FormErrors, Pages, Text, current_actor, known_postcode, page_requires, requires,
                        service)

pages = Pages("directory_pages", __name__, description="The signposting directory's pages")
api = Blueprint("directory", __name__, url_prefix="/directory/entries",
                description="The signposting directory: services and groups to point people to")
COORDINATORS = ("coordinator", "admin")
BEARER = [{"bearerAuth": []}]
SUGGESTED = 5  # entries a request's page suggests
KIND_CHOICES = [(key, kind.label) for key, kind in KINDS.items()]
LABELS = {"name": "Name", "kinds": "What it offers", "description": "What it is", "organisation": "Run by",
          "postcode": "Postcode", "when": "When", "phone": "Phone", "email": "Email", "website": "Website",
          "eligibility": "Who can use it", "within_km": "Within", "kind": "Kind of help", "file": "File"}


# --- what comes in ------------------------------------------------------------------------------------------------


class EntryIn(Schema):
    """A directory entry as its form gives it."""

    name = Text(required=True, blank=False, validate=validate.Length(max=200))
    kinds = fields.List(fields.Str(validate=validate.OneOf(sorted(KINDS))), required=True,
                        validate=validate.Length(min=1, error="Choose at least one kind of help it offers."))
    description = Text(multiline=True, load_default="", validate=validate.Length(max=2000))
    organisation = Text(load_default="", validate=validate.Length(max=200))
    postcode = Text(load_default=None, allow_none=True, validate=[validate.Length(max=10), known_postcode])
    when = Text(load_default="", validate=validate.Length(max=500))
    phone = Text(load_default="", validate=validate.Length(max=40))
    email = fields.Email(load_default="", validate=validate.Length(max=200),
                         error_messages={"invalid": "Give an email address, like name@example.org."})
    website = fields.Url(load_default="", schemes={"https", "http"}, validate=validate.Length(max=500),
                         error_messages={"invalid": "Give a web address starting https://."})
    eligibility = Text(multiline=True, load_default="", validate=validate.Length(max=1000))

    @validates_schema
    def some_way_to_reach_it(self, data, **kwargs):
        """A person signposted to it must be able to get in touch."""
        if not any(data.get(name) for name in ("phone", "email", "website", "postcode")):
            raise ValidationError({"phone": ["Give a phone number, email, website or postcode: how to reach it."]})


class SearchQuery(Schema):
    """What to look for: a kind of help, near a postcode."""

    kind = fields.Str(validate=validate.OneOf(sorted(KINDS)), metadata={"description": "A kind of help it offers."})
    postcode = Text(validate=[validate.Length(max=10), known_postcode],
                    metadata={"description": "Nearest to this postcode first (its district, e.g. FY1, is enough)."})
    within_km = fields.Float(validate=validate.Range(min=0.1, max=500),
                             metadata={"description": "Only entries this near the postcode (and those with no "
                                                      "place, such as helplines)."})


class EntryOut(Schema):
    """A service or group in the directory."""

    id = fields.UUID()
    name = fields.Str()
    kinds = fields.List(fields.Str(), metadata={"description": "Kinds of help (shared taxonomy)."})
    description = fields.Str()
    organisation = fields.Str()
    organisation_id = fields.UUID(allow_none=True, metadata={"description": "In the register of organisations."})
    postcode = fields.Str(allow_none=True)
    area = fields.Str()
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    when = fields.Str()
    phone = fields.Str()
    email = fields.Str()
    website = fields.Str()
    eligibility = fields.Str()
    distance_km = fields.Float(allow_none=True, metadata={"description": "From the postcode asked about."})


def place_of(postcode: str | None) -> tuple[float, float] | None:
    """A postcode's centre, if one is given."""
    if not postcode:
        return None
    place = gazetteer.locate(postcode)
    return place.latitude, place.longitude


def entry_details(data: dict[str, Any]) -> dict[str, Any]:
    """An entry's columns from loaded form data: its place from the postcode."""
    place = gazetteer.locate(data["postcode"]) if data.get("postcode") else None
    return {**data, "postcode": data.get("postcode") or None, "area": place.district if place else "",
            "latitude": place.latitude if place else None, "longitude": place.longitude if place else None}


# --- the API ------------------------------------------------------------------------------------------------------


@api.route("")
class DirectoryEntries(MethodView):
    @requires(*COORDINATORS)
    @api.arguments(SearchQuery, location="query")
    @api.response(200, EntryOut(many=True))
    @api.doc(security=BEARER)
    def get(self, query):
        """The community's services and groups offering a kind of help, nearest to a postcode first."""
        found = service_layer.directory(service().uow(), current_actor(), query.get("kind"),
                                        place_of(query.get("postcode")), query.get("within_km"))
        return [{**vars(entry), "distance_km": None if away is None else round(away, 1)} for entry, away in found]


# --- the pages ----------------------------------------------------------------------------------------------------


def render(template: str, **context: Any):
    """Render a directory page with what they all use."""
    from services.intake.entrypoints.pages import render as render_page
    return render_page(template, directory_labels=LABELS, **context)


@pages.route("/directory")
@page_requires(*COORDINATORS)
def directory():
    """The community's directory: filter by what someone needs and how near it is to their postcode."""
    args = {name: request.args.get(name, "").strip() for name in ("kind", "postcode", "within_km")}
    errors = FormErrors()
    try:
        query = SearchQuery().load({k: v for k, v in args.items() if v})
    except ValidationError as err:
        errors, query = FormErrors(err.messages, LABELS), {}
    found = service_layer.directory(service().uow(), current_actor(), query.get("kind"),
                                    place_of(query.get("postcode")), query.get("within_km"),
                                    retired=request.args.get("retired") == "1")
    return render("directory.html", rows=found, chosen=args, errors=errors,
                  show_retired=request.args.get("retired") == "1"), 422 if errors else 200


def entry_form(form: MultiDict, errors: FormErrors, entry=None, status: int = 200):
    return render("directory_entry.html", form=form, errors=errors, entry=entry), status


def form_details(form) -> dict[str, Any]:
    """The form's answers as EntryIn takes them (an empty postcode is none)."""
    details = {name: form.get(name, "") for name in ("name", "description", "organisation", "postcode", "when",
                                                      "phone", "email", "website", "eligibility")}
    details["postcode"] = details["postcode"] or None
    details["kinds"] = form.getlist("kinds")
    return {name: value for name, value in details.items() if value or name not in ("email", "website")}


@pages.route("/directory/new", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def new_entry():
    """Add a service or group to the directory."""
    if request.method == "GET":
        return entry_form(MultiDict(), FormErrors())
    try:
        data = EntryIn().load(form_details(request.form))
    except ValidationError as err:
        return entry_form(request.form, FormErrors(err.messages, LABELS), status=422)
    service_layer.add_entry(service().uow(), current_actor(), entry_details(data))
    return redirect("/directory", 303)


@pages.route("/directory/<uuid:entry_id>", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def show_entry(entry_id):
    """An entry's details, to change."""
    try:
        entry = service_layer.get_entry(service().uow(), current_actor(), entry_id)
    except NotFound as err:
        abort(404, message=str(err))
    if request.method == "GET":
        form = MultiDict({name: getattr(entry, name) or "" for name in ("name", "description", "organisation",
                                                                        "postcode", "when", "phone", "email",
                                                                        "website", "eligibility")})
        form.setlist("kinds", list(entry.kinds))
        return entry_form(form, FormErrors(), entry)
    try:
        data = EntryIn().load(form_details(request.form))
    except ValidationError as err:
        return entry_form(request.form, FormErrors(err.messages, LABELS), entry, 422)
    service_layer.change_entry(service().uow(), current_actor(), entry_id, entry_details(data))
    return redirect("/directory", 303)


@pages.route("/directory/<uuid:entry_id>/retire", methods=["POST"])
@page_requires(*COORDINATORS)
def retire_entry(entry_id):
    """Retire an entry (it is offered no more, and requests signposted to it still name it), or bring it back."""
    retired = request.form.get("retired", "1") == "1"
    try:
        service_layer.change_entry(service().uow(), current_actor(), entry_id, {"retired": retired})
    except NotFound as err:
        abort(404, message=str(err))
    return redirect("/directory" + ("?retired=1" if not retired else ""), 303)


@pages.route("/directory/import", methods=["GET", "POST"])
@page_requires(*COORDINATORS)
def import_entries():
    """Import an Open Referral UK / HSDS JSON file or a CSV sheet; every problem is named by where it is in the
    file, and nothing is imported while there is one."""
    if request.method == "GET":
        return render("directory_import.html", outcome=None, error=None)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return render("directory_import.html", outcome=None, error="Choose a file to import."), 422
    try:
        sheet = read_file(upload.read(), upload.filename)
    except DirectoryProblem as err:
        return render("directory_import.html", outcome=None, error=str(err)), 422
    outcome = service_layer.import_directory(service().uow(), current_actor(), sheet)
    return render("directory_import.html", outcome=outcome, error=None), 422 if outcome["errors"] else 200


@pages.route("/directory/template.csv")
@page_requires(*COORDINATORS)
def template():
    """The CSV template to fill in: its columns and an example row."""
    return Response(template_csv(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=directory-template.csv"})


# --- signposting a request ----------------------------------------------------------------------------------------


def suggestions(r: SupportRequest) -> list:
    """For a request's page, while it may still be signposted: the entries nearest the person, those offering its
    kind of help first."""
    if r.status not in ("submitted", "offered", "unmatched"):
        return []
    near = service_layer.directory(service().uow(), current_actor(), None, (r.latitude, r.longitude))
    return sorted(near, key=lambda pair: r.support_type not in pair[0].kinds)[:SUGGESTED * 2]  # stable: by distance


@pages.route("/board/<uuid:request_id>/signpost", methods=["POST"])
@page_requires(*COORDINATORS)
def signpost(request_id):
    """Signpost a request to a directory entry: it closes with that as its outcome."""
    try:
        service_layer.signpost(service().uow(), current_actor(), request_id, fields.UUID().deserialize(
            request.form.get("entry_id", "")), service().settings)
    except ValidationError:
        abort(422, message="Choose a service from the directory.")
    except NotFound as err:
        abort(404, message=str(err))
    except (NotOpen, NotSignpostable, IntakeError):
        pass  # its page says how it stands
    return redirect(f"/board/{request_id}", 303)
