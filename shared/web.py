"""What every service's web app shares: the app factory base, RFC 9457 problem details, and bearer tokens."""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlencode

import flask_smorest
from apispec import BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
import jinja2
import phonenumbers
import psycopg
from flask import Flask, Response, current_app, g, jsonify, redirect, render_template, request, session
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from kombu.exceptions import OperationalError as BrokerUnavailable
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from marshmallow import Schema, ValidationError, fields, validate
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from shared import gazetteer, tracing
from shared.bus import unavailable_dependency
from shared.auth import HOMES, ROLES, Actor
from shared.communities import all_communities
from shared.communities import get as community
from shared.communities import default_slug as default_community
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.idempotency import IdempotencyProblem
from shared.telemetry import (RETRY_AFTER_SECONDS, Check, add_metrics_endpoint, check_broker, check_database,
                              check_migrations, describe, frames, readiness)

log = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFETIME_DAYS = 30  # a deployment sets its own: CCS_TOKEN_LIFETIME_DAYS (Settings.token_lifetime_days)
TOKEN_CLAIMS = frozenset({"sub", "role", "communities", "jti", "iat", "exp"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# No inline script anywhere (pages load theirs from /static/ on the front door); inline styles are allowed, as the
# templates and Swagger UI use them.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data:",
    "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"])
csrf = CSRFProtect()
PROBLEM = "application/problem+json"


@dataclass
class ServiceContext:
    """What a service's views reach through `current_app.extensions["ccs"]`: its settings, database, and a
    factory of its unit of work."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker
    unit_of_work: Callable[[], Any] | None = None
    revoked: Any = None  # shared.revocation.RevocationList: the revoked tokens `requires` refuses

    def uow(self):
        """A new unit of work for this service."""
        return self.unit_of_work()


def service() -> ServiceContext:
    """The running service's context."""
    return current_app.extensions["ccs"]


# --- problem details -----------------------------------------------------------------------------------------

def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> Response:
    """An RFC 9457 problem details response."""
    body = {"type": "about:blank", "title": title, "status": status, **({"detail": detail} if detail else {}), **extra}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM
    return response


def field_errors(messages: dict[str, Any], prefix: str = "") -> list[dict[str, str]]:
    """Flatten marshmallow's nested messages into one entry per bad field, with a JSON pointer to it."""
    errors = []
    for key, value in messages.items():
        pointer = f"{prefix}/{key}"
        if isinstance(value, dict):
            errors.extend(field_errors(value, pointer))
        else:
            for message in value if isinstance(value, list) else [value]:
                if isinstance(message, dict):
                    errors.extend(field_errors(message, pointer))
                else:
                    errors.append({"field": pointer.lstrip("/").replace("/", "."), "pointer": "#" + pointer,
                                   "detail": str(message)})
    return errors


# marshmallow's stock messages, as a person filling in a form reads them; a message not here is already plain.
PLAIN_MESSAGES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^Missing data for required field\.$|^Field may not be (null|blank)\.$"), "{label} is needed."),
    (re.compile(r"^Not a valid (number|integer)\.$"), "{label} must be a number."),
    (re.compile(r"^Not a valid date\.$"), "{label} must be a date."),
    (re.compile(r"^Not a valid (datetime|date and time)\.$"), "{label} must be a date and time."),
    (re.compile(r"^Shorter than minimum length 1\.$"), "Choose at least one."),
    (re.compile(r"^Must be one of: .*\.$"), "Choose one of the options."),
    (re.compile(r"^Must be greater than 0 and less than or equal to (\S+)\.$"), "{label} must be more than 0 and at most {0}."),
    (re.compile(r"^Must be greater than or equal to (\S+) and less than or equal to (\S+)\.$"),
     "{label} must be from {0} to {1}."),
    (re.compile(r"^Longer than maximum length (\d+)\.$"), "{label} can be at most {0} characters."),
)


def plain(message: str, label: str) -> str:
    """A validation message in plain words, naming the field by its label."""
    for pattern, words in PLAIN_MESSAGES:
        if found := pattern.match(message):
            return words.format(*found.groups(), label=label)
    return message


class FormErrors:
    """A form's problems, all at once and in plain words: the summary at the top (each linking to its field) and the
    message beside each field, which points to it with `aria-describedby`. Fields are named as the API names them
    (`person.phone`), and each has the element id the templates give it (`person-phone`)."""

    def __init__(self, messages: dict[str, Any] | None = None, labels: dict[str, str] | None = None,
                 rename: Callable[[str], str] = lambda field: field):
        labels = labels or {}
        self.entries: list[dict[str, str]] = []
        for error in field_errors(messages or {}):
            field = rename(error["field"])
            if field not in self:
                label = labels.get(field) or field.rsplit(".", 1)[-1].replace("_", " ").capitalize()
                self.entries.append({"field": field, "id": field.replace(".", "-"), "label": label,
                                     "detail": plain(error["detail"], label)})

    def add(self, field: str, label: str, detail: str) -> "FormErrors":
        """One more problem a use case found (a phone already registered)."""
        self.entries.append({"field": field, "id": field.replace(".", "-"), "label": label, "detail": detail})
        return self

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, field: str) -> bool:
        return any(entry["field"] == field for entry in self.entries)

    def of(self, field: str) -> str | None:
        """What is wrong with one field, or None."""
        return next((entry["detail"] for entry in self.entries if entry["field"] == field), None)


class FieldError(Schema):
    """One bad field: its dotted name, where it is (a JSON pointer into the request, or a spreadsheet's line), and
    what is wrong."""

    field = fields.Str(required=True)
    pointer = fields.Str(metadata={"description": "A JSON pointer to the field in the request."})
    line = fields.Int(metadata={"description": "The spreadsheet's line (the header is line 1).", "minimum": 1})
    detail = fields.Str(required=True)


class Problem(Schema):
    """RFC 9457 problem details, with `errors` naming each bad field."""

    type = fields.Str(required=True, metadata={"example": "about:blank"})
    title = fields.Str(required=True)
    status = fields.Int(required=True)
    detail = fields.Str()
    errors = fields.List(fields.Nested(FieldError))


class Api(flask_smorest.Api):
    """flask-smorest's Api, answering every error as RFC 9457 problem details (and documenting them so)."""

    ERROR_SCHEMA = Problem

    def _register_responses(self):
        """Document every error response as `application/problem+json` with the Problem schema, and 503 (which any
        operation may answer while a dependency is down) with its Retry-After."""
        super()._register_responses()
        for name, response in self.spec.components.responses_lazy.items():
            content = response.get("content", {})
            if "application/json" in content:
                response["content"] = {PROBLEM: content["application/json"]}
        unavailable = self.spec.components.responses_lazy["SERVICE_UNAVAILABLE"]
        unavailable["description"] = UNAVAILABLE_DESCRIPTION
        unavailable["headers"] = {"Retry-After": {
            "description": "How many seconds to wait before trying again.", "schema": {"type": "integer"}}}

    def init_app(self, app, *, spec_kwargs=None):
        """Set up the API on `app`, refusing text that cannot be stored before any view reads it."""
        super().init_app(app, spec_kwargs=spec_kwargs)
        app.before_request(refuse_unstorable_text)

    def register_blueprint(self, blp, *, parameters=None, **options):
        """Register a blueprint; pages (`Pages`) are routed but left out of the OpenAPI document."""
        if isinstance(blp, Pages):
            self._app.register_blueprint(blp, **options)
        else:
            super().register_blueprint(blp, parameters=parameters, **options)

    def _register_pagination_header(self):
        """Document X-Pagination as what it is: a JSON object (flask-smorest documents it as a plain object, which
        OpenAPI reads as `total,3,total_pages,1`)."""
        self.spec.components.header("PAGINATION", {
            "description": "Where this page is among the pages, as a JSON object.",
            "content": {"application/json": {"schema": PaginationOut}}}, lazy=True)

    def handle_http_exception(self, error: HTTPException):
        """Turn any HTTP error (including marshmallow validation errors) into problem details."""
        data = getattr(error, "data", None) or {}
        messages = data.get("messages") or data.get("errors")
        extra: dict[str, Any] = {}
        detail = data.get("message") or error.description
        if messages:
            # webargs nests messages under the location ("json", "query", ...): keep only the fields.
            flat = {}
            for location, at_location in messages.items():
                flat.update(at_location if isinstance(at_location, dict) else {location: at_location})
            extra["errors"] = field_errors(flat)
            detail = "; ".join(f"{e['field']}: {e['detail']}" for e in extra["errors"])
        if error.code == 500:
            detail = "An unexpected error occurred."
        response = problem(error.code or 500, error.name, detail, **extra)
        for name, value in error.get_headers():  # e.g. the Allow of a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        for name, value in (data.get("headers") or {}).items():
            response.headers[name] = value
        return response


# --- a dependency down: 503 with Retry-After ----------------------------------------------------------------------

UNAVAILABLE_DESCRIPTION = ("Service Unavailable: the service's database (or message bus) cannot be reached for the "
                           "moment. Try again after the seconds in Retry-After (a create that takes an "
                           "Idempotency-Key: with the same key, so that it is made only once).")
# What SQLite says when another process holds the database, or its file cannot be opened: worth trying again. Its
# other OperationalErrors ("no such table", a syntax error) are faults that waiting does not mend.
# Errors whose handler looks closer (unavailable_dependency); Flask finds it for their subclasses too.
MAYBE_UNAVAILABLE = (sa.exc.DBAPIError, sa.exc.TimeoutError, sqlite3.Error, psycopg.Error, BrokerUnavailable)


def is_page_request() -> bool:
    """True when this request is for one of the HTML pages (a `Pages` blueprint), not the API."""
    return isinstance(current_app.blueprints.get(request.blueprint or ""), Pages)


def answer_conflict(error: sa.exc.IntegrityError):
    """409 when two requests made the same thing at the same moment (a unique phone number, say) and the second
    lost: nothing of it was kept, and sending it again gets the plain answer (already there, or made)."""
    log.warning("%s %s answered 409: %s", request.method, request.endpoint, describe(error))
    return problem(409, "Conflict", "Another change made the same thing at the same moment; nothing of this one "
                                    "was kept. Send it again to see where it stands.")


def log_fault(exc_info) -> None:
    """Flask's log of an unhandled error, without the error's words past their first line: a database's DETAIL
    or a statement can quote a person's details (shared/telemetry.py describe)."""
    rule = request.url_rule.rule if request.url_rule else "(no route)"  # a path can hold a phone number
    log.error("%s %s failed: %s\n%s", request.method, rule, describe(exc_info[1]), frames(exc_info[1]))


def answer_unavailable(error: BaseException):
    """503 with Retry-After while a dependency is down: problem details for the API, a page for a browser. The
    unit of work has rolled back whatever the request began. Any other error goes on to be a 500."""
    dependency = unavailable_dependency(error)
    if dependency is None:
        raise error
    cause = getattr(error, "orig", None)
    log.warning("%s %s answered 503: its %s is unavailable (%s%s)", request.method, request.endpoint, dependency,
                type(error).__name__, f": {type(cause).__name__}" if cause is not None else "")
    what = "database" if dependency == "database" else "message bus"
    if is_page_request():
        response = Response(render_template("unavailable.html", what=what, retry_after=RETRY_AFTER_SECONDS),
                            status=503, mimetype="text/html")
    else:
        response = problem(503, "Service Unavailable",
                           f"The service is briefly unavailable: its {what} cannot be reached. Try again in "
                           f"{RETRY_AFTER_SECONDS} seconds.")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- what the OpenAPI document says of every operation ------------------------------------------------------------

IDEMPOTENCY_WHY = ("Send an Idempotency-Key (a new random one, such as a UUID, for each new create) so that a retry "
                   "cannot make a duplicate: after a timeout, a 502 or a 503 you cannot tell whether the first "
                   "attempt was made, so send it again with the same key and body and you get the first answer "
                   "again (marked Idempotent-Replayed), never a second one. The same key with a different body "
                   "is refused with 422; keys are kept per caller.")
IDEMPOTENCY_KEY_WHY = "Why: a retry after a timeout or a 502 must not create a duplicate."


def has_idempotency_key(operation: dict[str, Any]) -> bool:
    """True when an operation takes an Idempotency-Key header."""
    return any(isinstance(p, dict) and p.get("in") == "header" and str(p.get("name", "")).lower() == "idempotency-key"
               for p in operation.get("parameters", []))


class OperationsPlugin(BasePlugin):
    """Says on every operation what shared/web.py does for all: it may answer 503 (with Retry-After) while a
    dependency is down, and a create that takes an Idempotency-Key says why to send one."""

    def operation_helper(self, path=None, operations=None, **kwargs):
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            if 503 not in responses and "503" not in responses:
                responses["503"] = "SERVICE_UNAVAILABLE"
            if has_idempotency_key(operation):
                description = operation.get("description", "")
                if IDEMPOTENCY_WHY not in description:
                    operation["description"] = f"{description}\n\n{IDEMPOTENCY_WHY}".strip()
                # The parameter dict may be shared by several operations: give each its own copy.
                operation["parameters"] = [
                    {**p, "description": f"{p.get('description', '')} {IDEMPOTENCY_KEY_WHY}".strip()}
                    if isinstance(p, dict) and p.get("in") == "header"
                    and str(p.get("name", "")).lower() == "idempotency-key"
                    and IDEMPOTENCY_KEY_WHY not in p.get("description", "") else p
                    for p in operation["parameters"]]


# --- tokens and sign-in ----------------------------------------------------------------------------------------

def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="ccs-api-token")


def claims_for(subject: str, role: str, communities: Iterable[str] | None = None,
               organisation: str | None = None) -> dict[str, Any]:
    """What a token or a signed-in session says about its holder."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    chosen = sorted(communities) if communities else [default_community()]
    unknown = [c for c in chosen if c not in all_communities()]
    if unknown:
        raise ValueError(f"no such community: {', '.join(unknown)}")
    return {"sub": subject, "role": role, "communities": chosen, "organisation": organisation}


def issue_token(secret: str, subject: str, role: str, communities: Iterable[str] | None = None,
                organisation: str | None = None, *, days: float = DEFAULT_TOKEN_LIFETIME_DAYS) -> str:
    """A signed bearer token that every service can check without asking another. It has an id (`jti`, which
    `ccs tokens revoke` takes) and expires `days` after it is issued; its times (`iat`, `exp`, seconds since the
    epoch) are on the machine's clock, not the rehearsal clock (shared/clock.py)."""
    if not days > 0:
        raise ValueError("a token must last more than 0 days")
    issued = time.time()
    return _serializer(secret).dumps({**claims_for(subject, role, communities, organisation),
                                      "jti": uuid.uuid4().hex, "iat": issued, "exp": issued + days * 86400})


def read_token(secret: str, token: str) -> dict[str, Any]:
    """The claims of a valid token; raises SignatureExpired once it has expired, BadSignature if it is not one of
    ours or lacks an id or expiry (tokens made before they had them are no longer taken)."""
    claims = _serializer(secret).loads(token)
    if not isinstance(claims, dict) or not TOKEN_CLAIMS <= claims.keys():
        raise BadSignature("The token has no id or expiry.")
    if time.time() >= claims["exp"]:
        raise SignatureExpired("The token has expired.")
    return claims


def token_id(secret: str, token: str) -> str | None:
    """The id (`jti`) of one of this deployment's tokens, expired or not; None if it is not one."""
    try:
        claims = _serializer(secret).loads(token.strip())
    except BadSignature:
        return None
    return claims.get("jti") if isinstance(claims, dict) else None


def requires(*roles: str):
    """Let an API view run only for a bearer token with one of `roles`; the claims are in `g.user`."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                flask_smorest.abort(401, message="A bearer token is required.",
                                    headers={"WWW-Authenticate": "Bearer"})
            try:
                g.user = read_token(service().settings.secret_key, header.removeprefix("Bearer ").strip())
            except SignatureExpired:
                flask_smorest.abort(401, message="The token has expired.", headers={"WWW-Authenticate": "Bearer"})
            except BadSignature:
                flask_smorest.abort(401, message="The token is not valid.", headers={"WWW-Authenticate": "Bearer"})
            revoked = service().revoked
            if revoked is not None and revoked.revokes(g.user):
                flask_smorest.abort(401, message="The token has been revoked.",
                                    headers={"WWW-Authenticate": "Bearer"})
            if g.user["role"] not in roles:
                flask_smorest.abort(403, message=f"This needs one of the roles: {', '.join(roles)}.")
            return view(*args, **kwargs)

        wrapper.csrf_exempt = True  # a bearer token is sent by code, never by a cross-site form
        return wrapper

    return decorator


def current_actor() -> Actor:
    """The actor of this request (after `requires` or `page_requires` let it in)."""
    return Actor.from_claims(g.user)


def page_requires(*roles: str):
    """Let a browser page run only for a signed-in user with one of `roles` (else to the sign-in page)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            user = session.get("user")
            if not user:
                return redirect(url_for_login(request.full_path.rstrip("?")))
            if user["role"] not in roles:
                return render_template("forbidden.html", roles=roles), 403
            g.user = user
            return view(*args, **kwargs)

        return wrapper

    return decorator


def local_time(moment: datetime | None) -> str:
    """A time as the signed-in user's community reads it (pages call it `local`)."""
    if moment is None:
        return ""
    return moment.astimezone(community(g.user["communities"][0]).zone).strftime("%a %d %b %Y %H:%M")


def url_for_login(next_path: str) -> str:
    """The sign-in page (served by intake, behind the same front door), coming back to `next_path`."""
    return "/login?" + urlencode({"next": next_path})


def csrf_exempt(view):
    """Mark a view that needs no CSRF token because a cross-site form cannot forge what it checks instead (Twilio's
    webhooks: a signature). Views behind `requires` (a bearer token) are exempt already."""
    view.csrf_exempt = True
    return view


def protect_forms() -> None:
    """Refuse a POST, PUT, PATCH or DELETE that does not carry the session's CSRF token (flask-wtf's CSRFProtect:
    the `csrf_token` form field or the X-CSRFToken header), unless its view is exempt. Every page and every new
    view is protected unless it says otherwise."""
    if request.method in SAFE_METHODS or request.endpoint is None:
        return  # nothing changes, or no such route (answered 404 or 405 later)
    view = current_app.view_functions.get(request.endpoint)
    handler = getattr(getattr(view, "view_class", None), request.method.lower(), view)
    if not getattr(handler, "csrf_exempt", False):
        csrf.protect()


def form_expired(error: CSRFError) -> Response:
    """A form post without a valid CSRF token: 400, saying what to do."""
    return problem(400, "Bad Request", "The form has expired or did not come from this site; reload the page and "
                                       f"try again. ({error.description})")


def security_headers(public_url: str) -> dict[str, str]:
    """The headers every answer carries: a Content-Security-Policy with no inline script and no framing, no
    content-type sniffing, no address sent to other sites, and (when the public address is https) HSTS."""
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
               "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}
    if public_url.startswith("https://"):
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


def add_security_headers(app: Flask, public_url: str) -> None:
    """Give every answer of `app` the security headers (keeping any a view set itself)."""
    headers = security_headers(public_url)

    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response


def client_address() -> str:
    """The address a request came from: the last hop that the proxy in front (nginx, or the front door) added to
    X-Forwarded-For, else the connection's. (Services are reachable only through a proxy; one reached directly
    could be told any address.)"""
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    return hops[-1] if hops else (request.remote_addr or "")


def schema_name(schema) -> str:
    """OpenAPI component names: the class name, with `Partial` for a partial copy used in a PATCH."""
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__.removesuffix("Schema")
    return name + "Partial" if getattr(schema, "partial", False) else name


# --- the app factory base ------------------------------------------------------------------------------------

def create_service_app(definition, settings: Settings, blueprints: list, outbox,
                       unit_of_work: Callable[[sessionmaker], Any] | None = None,
                       test_config: dict[str, Any] | None = None, revocations=None) -> Flask:
    """A service's Flask app: its settings (read once by its bootstrap), its database and unit of work, the API
    with problem details, its pages, Prometheus metrics, /healthz (alive) and /readyz (ready); 503 with Retry-After
    while its database or broker cannot be reached; bearer tokens checked against the service's `revocations`
    (shared/revocation.py), CSRF tokens on every form post, security headers on every answer, and a span for each
    request when tracing is on (shared/tracing.py)."""
    name = definition.name
    app = Flask(definition.package, static_folder=None)
    app.jinja_loader = jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(str(definition.templates)),
        jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
    ])
    app.config.update(
        SESSION_COOKIE_NAME="ccs_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        API_TITLE=definition.title,
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH=f"openapi/{name}.json",
        SECRET_KEY=settings.secret_key,
        JSON_SORT_KEYS=False,
        WTF_CSRF_CHECK_DEFAULT=False,  # protect_forms decides, view by view
        WTF_CSRF_TIME_LIMIT=None,  # a form's token lasts as long as the session it was made for
    )
    if test_config:
        app.config.update(test_config)
    if tracing.configure(name):
        tracing.trace_requests(app)
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    app.extensions["ccs"] = ServiceContext(
        settings=settings, engine=engine, sessions=sessions,
        unit_of_work=(lambda: unit_of_work(sessions)) if unit_of_work else None,
        revoked=revocations.list_for(sessions, settings.secret_key) if revocations is not None else None)
    csrf.init_app(app)
    app.before_request(protect_forms)
    app.register_error_handler(CSRFError, form_expired)
    app.register_error_handler(IdempotencyProblem, lambda error: problem(
        error.status, HTTPStatus(error.status).phrase, str(error)))
    app.register_error_handler(sa.exc.IntegrityError, answer_conflict)
    app.log_exception = log_fault
    for kind in MAYBE_UNAVAILABLE:
        app.register_error_handler(kind, answer_unavailable)
    add_security_headers(app, settings.public_url)
    api = Api(app, spec_kwargs={
        "marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=schema_name),
        "extra_plugins": [OperationsPlugin()],
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}}})
    for blueprint in blueprints:
        api.register_blueprint(blueprint)

    @app.context_processor
    def page_context():
        user = session.get("user")
        return {"csrf_token": generate_csrf, "user": user, "home": HOMES.get(user["role"], "/") if user else "/",
                "service_name": name, "development_sms": not settings.uses_twilio, "local": local_time}

    add_metrics_endpoint(app, name, outbox)

    @app.get(f"/healthz/{name}")
    def healthz():
        """Alive: 200 while this process answers. It asks nothing of the database or the broker, so an outage of
        theirs does not get every instance restarted; /readyz says whether to send it traffic."""
        return {"service": name, "status": "ok"}

    @app.get(f"/readyz/{name}")
    def readyz():
        """Ready: 200 when the database answers, is at the newest migration, and the broker can be reached (a success
        taken on trust for a few seconds: `check_broker`); else 503 (problem details, with Retry-After) naming each
        check that failed."""
        status, body = readiness(name, [
            Check("database", lambda: check_database(engine)),
            Check("migrations", lambda: check_migrations(name, engine), needs="database"),
            Check("broker", lambda: check_broker(settings))])
        response = jsonify(body)
        response.status_code = status
        response.headers["Cache-Control"] = "no-store"
        if status != 200:
            response.mimetype = PROBLEM
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    return app


# --- fields shared by the services' schemas --------------------------------------------------------------------

def phone_region() -> str:
    """How to read a national number: the country of the caller's community, else the configured default."""
    user = g.get("user") if current_app else None
    if user and user.get("communities"):
        return all_communities()[user["communities"][0]].country
    return service().settings.default_region if current_app else "GB"


def normalise_phone(value: str, region: str = "GB") -> str:
    """A phone number in E.164 (UK and Canadian numbers in national or international form); ValueError if not."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as err:
        raise ValueError("is not a phone number") from err
    if not phonenumbers.is_valid_number(number):
        raise ValueError("is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class PhoneNumber(fields.String):
    """A phone number, loaded as E.164 in the service's default region."""

    def __init__(self, **kwargs):
        metadata = {"description": "A valid phone number: national in your community's country, or international "
                                   "(+44 ..., +1 ...); kept in E.164.", **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text_value = super()._deserialize(value, attr, data, **kwargs)
        region = phone_region()
        try:
            return normalise_phone(text_value, region)
        except ValueError as err:
            raise ValidationError(f"{text_value!r} {err}.") from err


def known_postcode(value: str) -> None:
    """A postcode the gazetteer knows (a validator, so every bad field is named at once)."""
    try:
        gazetteer.locate(value)
    except gazetteer.UnknownPostcode as err:
        raise ValidationError(str(err)) from err


def page_of(session, query, pagination_parameters) -> list:
    """One page of a select's rows, setting the total that flask-smorest reports in X-Pagination."""
    pagination_parameters.item_count = session.scalar(
        sa.select(sa.func.count()).select_from(query.order_by(None).subquery()))
    return session.scalars(query.offset(pagination_parameters.first_item)
                           .limit(pagination_parameters.page_size)).all()


# --- what the API takes in: media types, text that can be stored, strict fields, capped pages ---------------------

MAX_PAGE = 10_000  # with at most 100 a page, a million rows in: beyond that a page number is refused, not a 500
CONTROLS = "\\x00-\\x1f\\x7f-\\x9f"  # control characters (C0, DEL, C1), as a regex class body (Python and ECMA)
CONTROLS_BUT_LINE_BREAKS = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f"  # the same, less tab, LF and CR
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def is_json(mimetype: str) -> bool:
    """application/json, or a JSON dialect such as application/fhir+json."""
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored (a lone surrogate cannot be encoded as UTF-8; PostgreSQL refuses NUL), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Is not valid text: it has a lone surrogate, which cannot be encoded as UTF-8."
    if "\x00" in value:
        return "Must not contain a NUL character."
    return None


def unstorable(value: Any, pointer: str = "") -> list[tuple[str, str]]:
    """(JSON pointer, why) for each string in a parsed JSON value, names of members included, that cannot be stored."""
    found = []
    if isinstance(value, str):
        why = text_problem(value)
        found += [(pointer, why)] if why else []
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"
            why = text_problem(str(key))
            found += [(here, f"The member's name: {why[0].lower()}{why[1:]}")] if why else []
            found += unstorable(item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += unstorable(item, f"{pointer}/{index}")
    return found


def checks_own_text(view: Callable) -> Callable:
    """Mark a view that refuses text that cannot be stored itself (in its own format, e.g. a FHIR OperationOutcome)."""
    view.checks_own_text = True
    return view


def refuse_unstorable_text():
    """Before any view: 422 naming each query parameter, form field or string in a JSON body that cannot be stored,
    wherever it is and whatever the endpoint would do with it."""
    view = current_app.view_functions.get(request.endpoint)
    handler = getattr(getattr(view, "view_class", None), request.method.lower(), view)
    if view is None or getattr(handler, "checks_own_text", False):
        return None
    found = [(f"/{name}", why) for name, values in request.args.lists() for value in (name, *values)
             if isinstance(value, str) and (why := text_problem(value))]
    if request.mimetype in FORMS:
        found += [(f"/{name}", why) for name, values in request.form.lists() for value in (name, *values)
                  if isinstance(value, str) and (why := text_problem(value))]
    elif is_json(request.mimetype):
        found += unstorable(request.get_json(silent=True))
    if not found:
        return None
    errors = [{"field": pointer.lstrip("/").replace("/", ".") or "body", "pointer": "#" + pointer, "detail": why}
              for pointer, why in found]
    return problem(422, "Unprocessable Content", "; ".join(f"{e['field']}: {e['detail']}" for e in errors),
                   errors=errors)


class Parser(FlaskParser):
    """webargs' parser, refusing a body of another media type than the endpoint takes with 415 (rather than reading
    it as no body at all and answering 422 for every required field)."""

    def _raw_load_json(self, req):
        """The JSON body; 415 for a body that is not JSON."""
        if not is_json(req.mimetype) and (req.mimetype or req.content_length):
            flask_smorest.abort(415, message=f"Send the body as application/json, not {req.mimetype or 'untyped'}.")
        return super()._raw_load_json(req)

    def load_form(self, req, schema):
        """The form fields; 415 for a body that is not a form."""
        if req.mimetype not in FORMS and (req.mimetype or req.content_length):
            flask_smorest.abort(415, message=f"Send the body as {FORMS[0]}, not {req.mimetype or 'untyped'}.")
        return super().load_form(req, schema)


class PaginationOut(Schema):
    """Where a page is among the pages: the X-Pagination header, a JSON object."""

    total = fields.Int(required=True, metadata={"description": "How many items there are.", "minimum": 0})
    total_pages = fields.Int(required=True, metadata={"description": "How many pages there are.", "minimum": 0})
    first_page = fields.Int(metadata={"description": "The first page (when there are items).", "minimum": 1})
    last_page = fields.Int(metadata={"description": "The last page (when there are items).", "minimum": 1})
    page = fields.Int(metadata={"description": "This page (when it has items).", "minimum": 1})
    previous_page = fields.Int(metadata={"description": "The page before this one.", "minimum": 1})
    next_page = fields.Int(metadata={"description": "The page after this one.", "minimum": 1})


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint as every service's API uses it: a body of the wrong media type gets 415, and a
    page number past MAX_PAGE is refused; the OpenAPI document says both."""

    ARGUMENTS_PARSER = Parser()
    PAGINATION_ARGUMENTS_PARSER = Parser()

    def arguments(self, schema, *, location="json", **kwargs):
        """Parse and validate `schema` from `location`; a JSON or form body also documents its 415."""
        parse = super().arguments(schema, location=location, **kwargs)
        if location not in ("json", "form"):
            return parse
        return lambda view: self.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE")(parse(view))

    def paginate(self, pager=None, *, page=None, page_size=None, max_page_size=None):
        """flask-smorest's pagination (`page`, `page_size` at most 100), with `page` at most MAX_PAGE."""
        paginate = super().paginate(pager, page=page, page_size=page_size, max_page_size=max_page_size)

        def decorator(view):
            paginated = paginate(view)
            parameters = paginated._apidoc["pagination"]["parameters"]["schema"]  # made for this view alone
            parameters._declared_fields["page"] = fields.Integer(
                load_default=page or self.DEFAULT_PAGINATION_PARAMETERS["page"],
                validate=validate.Range(min=1, max=MAX_PAGE),
                metadata={"description": f"Which page, from 1 (at most {MAX_PAGE})."})
            return paginated

        return decorator


class Pages(flask_smorest.Blueprint):
    """HTML pages for signed-in browsers: routed as any blueprint is, but not part of the API's OpenAPI document."""


class Integer(fields.Integer):
    """An integer given as a JSON number without a fraction: "3", 2.5 and true are refused."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)


class Float(fields.Float):
    """A number given as a JSON number: "53.8" and true are refused."""

    def _validated(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._validated(value)


class Boolean(fields.Boolean):
    """A boolean given as a JSON boolean: "yes", "true", 1 and the like are refused."""

    default_error_messages = {"invalid": "Must be true or false (a JSON boolean)."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class QueryBoolean(fields.Boolean):
    """A boolean in a query string: `true` or `false`, nothing else."""

    truthy, falsy = {"true"}, {"false"}
    default_error_messages = {"invalid": "Must be true or false."}


class Text(fields.String):
    """Text that can be stored and shown: without control characters (tabs and line breaks only in `multiline`
    text), trimmed of surrounding space, and with something besides space unless `blank` is allowed. The
    OpenAPI document states it as a pattern (or states the field's own Regexp, which is stricter)."""

    def __init__(self, *, multiline: bool = False, blank: bool = True, **kwargs):
        self.multiline, self.blank = multiline, blank
        banned = CONTROLS_BUT_LINE_BREAKS if multiline else CONTROLS
        self.banned = re.compile(f"[{banned}]")
        super().__init__(**kwargs)
        if not any(isinstance(check, validate.Regexp) for check in self.validators):
            pattern = f"^[^{banned}]*$" if blank else f"^[^{banned}]*[^\\s{banned}][^{banned}]*$"
            self.metadata = {"pattern": pattern, **self.metadata}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        why = text_problem(text)
        if why:
            raise ValidationError(why)
        if self.banned.search(text):
            raise ValidationError("Must not contain control characters." if self.multiline else
                                  "Must be one line, without control characters.")
        text = text.strip()
        if not text and not self.blank:
            raise ValidationError("Must not be blank.")
        return text
