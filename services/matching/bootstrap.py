"""Matching, assembled: its settings (read from the environment once), its web app, its worker's parts, and the
definition the shared runtime finds it by."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Mapping

from flask import Flask

from services.matching.adapters import Base, MatchingUnitOfWork, outbox, revocations, warm_index
from services.matching import service_layer
from services.matching.domain import Policy
from services.matching.entrypoints import api, pages, timers
from services.matching.entrypoints.handlers import HANDLERS
from shared import config
from shared.service import ServiceDefinition, WorkerParts
from shared.web import create_service_app


@dataclass(frozen=True)
class MatchingSettings(config.Settings):
    """Everything a matching process needs: where it runs, and the matching policy."""

    policy: Policy = field(default_factory=Policy)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "MatchingSettings":
        """Read the settings once; SettingsError names a variable that cannot be used."""
        environ = os.environ if environ is None else environ
        base = config.load("matching", environ)
        default = Policy()
        policy = Policy(
            batch_size=config.env_number(environ, "CCS_OFFER_BATCH", default.batch_size, minimum=1, maximum=50),
            max_rounds=config.env_number(environ, "CCS_MAX_ROUNDS", default.max_rounds, minimum=1, maximum=50),
            request_radius_km=config.env_number(environ, "CCS_REQUEST_RADIUS_KM", default.request_radius_km,
                                                kind=float, minimum=0.1, maximum=500),
            offer_minutes=Policy.minutes_by_urgency(config.env_number(
                environ, "CCS_OFFER_MINUTES", default.offer_minutes["routine"], minimum=1, maximum=7 * 24 * 60)))
        return cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, policy=policy)


def create_app(test_config=None) -> Flask:
    """Matching's web app: the volunteers, matches, befriending and applicants API, the roster pages, the public
    page for applying to volunteer and the board of applicants."""
    return create_service_app(SERVICE, MatchingSettings.from_env(),
                              [api.blp, api.matches, api.befriending, api.applying, api.training, api.checks,
                               pages.blp], outbox,
                              unit_of_work=lambda sessions: MatchingUnitOfWork(sessions, outbox),
                              test_config=test_config, revocations=revocations)


def worker(app: Flask) -> WorkerParts:
    """Matching's worker: a handler for each event it consumes, and the timers."""
    context = app.extensions["ccs"]
    handlers = {event_type: partial(handler, settings=context.settings) for event_type, handler in HANDLERS.items()}
    return WorkerParts.from_handlers("matching", app, handlers, outbox, loops={
        "timers": timers.timers_loop(context), "index": warm_index(context.sessions)})


def subject_access(request_ids) -> list:
    """What matching holds about these requests, read from its own database (`ccs person export`)."""
    from shared.db import make_engine, make_sessions

    engine = make_engine(MatchingSettings.from_env().database_url)
    try:
        return service_layer.held_about(MatchingUnitOfWork(make_sessions(engine), outbox), request_ids)
    finally:
        engine.dispose()


SERVICE = ServiceDefinition(
    name="matching",
    title="Matching",
    package="services.matching",
    routes=("/volunteers", "/matches", "/roster", "/offers", "/befriending", "/applicants", "/join", "/training"),
    create_app=create_app,
    worker=worker,
    metadata=lambda: Base.metadata,
    subject_access=subject_access,
)
