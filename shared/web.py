"""What every service's web app shares: the app factory base, RFC 9457 problem details, and bearer tokens."""

from __future__ import annotations

import functools
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlencode

import flask_smorest
from apispec.ext.marshmallow import MarshmallowPlugin
import jinja2
import phonenumbers
from flask import Flask, Response, current_app, g, jsonify, redirect, render_template, request, session
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from marshmallow import Schema, ValidationError, fields
from werkzeug.exceptions import HTTPException

from shared import gazetteer
from shared.auth import ROLES, Actor
from shared.communities import all_communities
from shared.communities import get as community
from shared.communities import default_slug as default_community
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.telemetry import add_metrics_endpoint

log = logging.getLogger(__name__)

TOKEN_MAX_AGE = 90 * 24 * 3600
PROBLEM = "application/problem+json"


@dataclass
class ServiceContext:
    """What a service's views reach through `current_app.extensions["ccs"]`: its settings, database, and a
    factory of its unit of work."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker
    unit_of_work: Callable[[], Any] | None = None

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


class FieldError(Schema):
    """One bad field: its dotted name, a JSON pointer to it in the request, and what is wrong."""

    field = fields.Str(required=True)
    pointer = fields.Str(required=True)
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
        """Document every error response as `application/problem+json` with the Problem schema."""
        super()._register_responses()
        for name, response in self.spec.components.responses_lazy.items():
            content = response.get("content", {})
            if "application/json" in content:
                response["content"] = {PROBLEM: content["application/json"]}

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
        for name, value in (data.get("headers") or {}).items():
            response.headers[name] = value
        return response


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
                organisation: str | None = None) -> str:
    """A signed bearer token that every service can check without asking another."""
    return _serializer(secret).dumps(claims_for(subject, role, communities, organisation))


def read_token(secret: str, token: str) -> dict[str, Any]:
    """The claims of a valid token; raises BadSignature (or SignatureExpired) otherwise."""
    return _serializer(secret).loads(token, max_age=TOKEN_MAX_AGE)


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
            if g.user["role"] not in roles:
                flask_smorest.abort(403, message=f"This needs one of the roles: {', '.join(roles)}.")
            return view(*args, **kwargs)

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


def csrf_token() -> str:
    """The signed-in session's token for forms; made on first use."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def check_csrf() -> None:
    """Refuse a form post that does not carry the session's token."""
    sent = request.form.get("csrf_token", "")
    if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
        flask_smorest.abort(400, message="The form has expired; reload the page and try again.")


def schema_name(schema) -> str:
    """OpenAPI component names: the class name, with `Partial` for a partial copy used in a PATCH."""
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__.removesuffix("Schema")
    return name + "Partial" if getattr(schema, "partial", False) else name


# --- the app factory base ------------------------------------------------------------------------------------

def create_service_app(definition, settings: Settings, blueprints: list, outbox,
                       unit_of_work: Callable[[sessionmaker], Any] | None = None,
                       test_config: dict[str, Any] | None = None) -> Flask:
    """A service's Flask app: its settings (read once by its bootstrap), its database and unit of work, the API
    with problem details, its pages, Prometheus metrics and a health check."""
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
    )
    if test_config:
        app.config.update(test_config)
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    app.extensions["ccs"] = ServiceContext(settings=settings, engine=engine, sessions=sessions,
                                           unit_of_work=(lambda: unit_of_work(sessions)) if unit_of_work else None)
    api = Api(app, spec_kwargs={
        "marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=schema_name),
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}}})
    for blueprint in blueprints:
        api.register_blueprint(blueprint)

    @app.context_processor
    def page_context():
        return {"csrf_token": csrf_token, "user": session.get("user"), "service_name": name,
                "development_sms": not settings.uses_twilio, "local": local_time}

    add_metrics_endpoint(app, name, outbox)

    @app.get(f"/healthz/{name}")
    def healthz():
        """Answer 200 when the service's database answers."""
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"service": name, "status": "ok"}

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
