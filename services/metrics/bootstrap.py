"""The metrics service put together: its settings (read from the environment once), its web app, its worker's
parts, its `ccs metrics` commands, and the definition the shared runtime finds it by."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Mapping

from services.metrics.adapters import Base, MetricsUnitOfWork, outbox, revocations
from services.metrics.entrypoints import api, dead_letters, pages
from services.metrics.entrypoints.handlers import HANDLERS
from shared import config
from shared.config import Settings, env_number
from shared.service import ServiceDefinition, WorkerParts
from shared.web import create_service_app


@dataclass(frozen=True)
class MetricsSettings(Settings):
    """The base settings, and how small a count must be to be shown as "<5"."""

    suppress_below: int = 5  # counts from 1 to this minus one are suppressed, as NHS reporting does

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "MetricsSettings":
        """Read once from the environment; SettingsError names a bad variable."""
        environ = os.environ if environ is None else environ
        base = config.load("metrics", environ)
        return cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(Settings)},
                   suppress_below=env_number(environ, "CCS_SUPPRESS_BELOW", 5, minimum=0, maximum=1000))


def create_app(test_config=None):
    """Metrics' web app: the counts API, the group activities, the managers' dashboard and report, and the admins'
    dead-letters page."""
    return create_service_app(SERVICE, MetricsSettings.from_env(), [api.blp, api.activities, pages.blp,
                                                                     dead_letters.blp], outbox,
                              unit_of_work=MetricsUnitOfWork, test_config=test_config, revocations=revocations)


def worker(app) -> WorkerParts:
    """The worker's parts: a fact for every event it hears; no loops of its own (it publishes nothing, so the
    shared outbox relay finds nothing to send)."""
    return WorkerParts.from_handlers("metrics", app, HANDLERS, outbox)


def commands() -> list:
    """`ccs metrics rebuild` (imported when asked for: the command reads the settings from here)."""
    from services.metrics.entrypoints.cli import metrics

    return [metrics]


SERVICE = ServiceDefinition(
    name="metrics",
    title="Metrics",
    package="services.metrics",
    routes=("/activities", "/dashboard", "/report", "/activity.csv", "/activity", "/dead-letters"),
    create_app=create_app,
    worker=worker,
    metadata=lambda: Base.metadata,
    commands=commands,
)
