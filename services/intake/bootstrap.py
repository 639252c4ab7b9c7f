"""Intake built from its settings: the web app, the worker's parts, its commands, and its service definition."""

from __future__ import annotations

import dataclasses
from typing import Mapping

from sqlalchemy.orm import sessionmaker

from services.intake.adapters import IntakeUnitOfWork, metadata, outbox, revocations
from shared import config
from shared.config import Settings
from shared.service import ServiceDefinition, WorkerParts
from shared.web import create_service_app


@dataclasses.dataclass(frozen=True)
class IntakeSettings(Settings):
    """Intake's settings: the base settings (intake keeps none of its own yet)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "IntakeSettings":
        """Read intake's settings from the environment, once; SettingsError names a bad variable."""
        base = config.load("intake", environ)
        return cls(**{field.name: getattr(base, field.name) for field in dataclasses.fields(base)})


def unit_of_work_for(sessions: sessionmaker) -> IntakeUnitOfWork:
    """A new unit of work on intake's database."""
    return IntakeUnitOfWork(sessions, outbox)


def create_app(test_config=None):
    """Intake's web app: the API (requests, referrals, FHIR, people's records, concerns) and the coordinators'
    pages."""
    from services.intake.entrypoints import api, concerns, directory, pages, surveys

    return create_service_app(SERVICE, IntakeSettings.from_env(), [api.blp, api.referrals, api.fhir_blp, api.people,
                                                                  pages.blp, directory.api, directory.pages,
                                                                  concerns.api, concerns.pages, surveys.pages],
                              outbox, unit_of_work=unit_of_work_for, test_config=test_config,
                              revocations=revocations)


def worker(app) -> WorkerParts:
    """Intake's worker: it follows matching's events, sends referrers' organisations their webhooks, and runs the
    nightly retention job."""
    from services.intake.entrypoints.handlers import HANDLERS
    from services.intake.entrypoints.timers import retention_loop
    from services.intake.entrypoints.webhooks import webhooks_loop

    return WorkerParts.from_handlers("intake", app, HANDLERS, outbox,
                                     loops={"webhooks": webhooks_loop(app.extensions["ccs"]),
                                            "retention": retention_loop(app.extensions["ccs"])})


def commands() -> list:
    """Intake's `ccs` commands: `users`, `tokens`, `directory` and `person`."""
    from services.intake.entrypoints.cli import directory, person, tokens, users

    return [users, tokens, directory, person]


SERVICE = ServiceDefinition(
    name="intake",
    title="Intake",
    package="services.intake",
    routes=("/requests", "/referrals", "/fhir", "/login", "/logout", "/board", "/my-referrals", "/communities",
            "/organisations", "/directory", "/people", "/concerns"),
    create_app=create_app,
    worker=worker,
    metadata=lambda: metadata,
    commands=commands,
)
