"""What every service's web app shares: the app factory base, RFC 9457 problem details, and bearer tokens."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Iterable

import flask_smorest
import phonenumbers
from flask import Flask, Response, current_app, g, jsonify, request
from marshmallow import ValidationError, fields
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from werkzeug.exceptions import HTTPException

from shared import config as config_module
from shared.config import Settings
from shared.db import make_engine, make_sessions

log = logging.getLogger(__name__)

ROLES = ("admin", "coordinator", "referrer", "manager")
TOKEN_MAX_AGE = 90 * 24 * 3600
PROBLEM = "application/problem+json"


@dataclass
class ServiceContext:
    """What a service's handlers and views reach through `current_app.extensions["ccs"]`."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker


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


class Api(flask_smorest.Api):
    """flask-smorest's Api, answering every error as RFC 9457 problem details."""

    def handle_http_exception(self, error: HTTPException):
        """Turn any HTTP error (including marshmallow validation errors) into problem details."""
        data = getattr(error, "data", None) or {}
        messages = data.get("messages") or data.get("errors")
        extra: dict[str, Any] = {}
        detail = data.get("message") or error.description
        if messages:
            # webargs nests messages under the location ("json", "query", ...): keep only the fields.
            flat = {}
            for location, fields in messages.items():
                flat.update(fields if isinstance(fields, dict) else {location: fields})
            extra["errors"] = field_errors(flat)
            detail = "; ".join(f"{e['field']}: {e['detail']}" for e in extra["errors"])
        if error.code == 500:
            detail = "An unexpected error occurred."
        response = problem(error.code or 500, error.name, detail, **extra)
        for name, value in (data.get("headers") or {}).items():
            response.headers[name] = value
        return response


# --- tokens --------------------------------------------------------------------------------------------------

def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="ccs-api-token")


def issue_token(secret: str, subject: str, role: str, communities: Iterable[str] = ("default",)) -> str:
    """A signed bearer token that every service can check without asking another."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return _serializer(secret).dumps({"sub": subject, "role": role, "communities": sorted(communities)})


def read_token(secret: str, token: str) -> dict[str, Any]:
    """The claims of a valid token; raises BadSignature (or SignatureExpired) otherwise."""
    return _serializer(secret).loads(token, max_age=TOKEN_MAX_AGE)


def requires(*roles: str):
    """Let the view run only for a bearer token with one of `roles`; the claims are in `g.user`."""

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


# --- the app factory base ------------------------------------------------------------------------------------

def create_service_app(name: str, blueprints: list, test_config: dict[str, Any] | None = None,
                       title: str | None = None) -> Flask:
    """A service's Flask app: settings, its database, the API with problem details, and a health check."""
    app = Flask(f"services.{name}")
    settings = config_module.load(name)
    app.config.update(
        API_TITLE=title or f"{name} service",
        API_VERSION="1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH=f"openapi/{name}.json",
        SECRET_KEY=settings.secret_key,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    engine = make_engine(settings.database_url)
    app.extensions["ccs"] = ServiceContext(settings=settings, engine=engine, sessions=make_sessions(engine))
    api = Api(app, spec_kwargs={"components": {"securitySchemes": {
        "bearerAuth": {"type": "http", "scheme": "bearer"}}}})
    for blueprint in blueprints:
        api.register_blueprint(blueprint)

    @app.get(f"/healthz/{name}")
    def healthz():
        """Answer 200 when the service's database answers."""
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"service": name, "status": "ok"}

    return app


# --- fields shared by the services' schemas --------------------------------------------------------------------

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
        region = service().settings.default_region if current_app else "GB"
        try:
            return normalise_phone(text_value, region)
        except ValueError as err:
            raise ValidationError(f"{text_value!r} {err}.") from err
