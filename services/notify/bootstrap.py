"""The notify service put together: its settings (read from the environment once), its web app, its worker's
parts (the bus handlers and the SMS sender, with the gateway the settings choose), and the definition the shared
runtime finds it by."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Mapping

from services.notify.adapters import Base, NotifyUnitOfWork, gateway_for, holds, outbox, revocations
from services.notify.domain import Retry
from services.notify.entrypoints import api, handlers, pages
from services.notify.entrypoints.sender import sender
from services.notify.entrypoints.timers import retention_loop
from shared import config
from shared.communities import Community, all_communities
from shared.config import Settings, env_number, quiet_hours_from
from shared.service import ServiceDefinition, WorkerParts
from shared.web import create_service_app


@dataclass(frozen=True)
class NotifySettings(Settings):
    """The base settings, and how notify sends: retries of a failed send, quiet hours, the communities."""

    retry: Retry = Retry()  # CCS_SMS_MAX_ATTEMPTS, CCS_SMS_RETRY_BASE_SECONDS
    quiet_hours: str | None = None  # CCS_QUIET_HOURS: overrides every community's; None keeps their own
    communities: Mapping[str, Community] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "NotifySettings":
        """Read once from the environment; SettingsError names a bad variable."""
        environ = os.environ if environ is None else environ
        base = config.load("notify", environ)
        retry = Retry(max_attempts=env_number(environ, "CCS_SMS_MAX_ATTEMPTS", 5, minimum=1, maximum=100),
                      base_seconds=env_number(environ, "CCS_SMS_RETRY_BASE_SECONDS", 2.0, kind=float, minimum=0,
                                              maximum=3600))
        return cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(Settings)}, retry=retry,
                   quiet_hours=quiet_hours_from(environ), communities=all_communities())

    def community(self, slug: str | None) -> Community | None:
        """The community a message is sent for, if it is one we know."""
        return self.communities.get(slug or "")


def create_app(test_config=None):
    """Notify's web app: Twilio's webhooks, the messages API, and the SMS pages."""
    return create_service_app(SERVICE, NotifySettings.from_env(), [api.blp, pages.blp], outbox,
                              unit_of_work=NotifyUnitOfWork, test_config=test_config, revocations=revocations)


def worker(app) -> WorkerParts:
    """The worker's parts: the handlers that queue SMS, the sender that sends them through the gateway the
    settings choose (Twilio, or the development gateway), and the nightly retention job."""
    context = app.extensions["ccs"]
    settings = context.settings
    gateway = gateway_for(settings)
    holds.listener = getattr(gateway, "held", None)  # the development gateway shows what waits out the quiet hours
    return WorkerParts.from_handlers("notify", app, handlers.bound(settings), outbox,
                                     loops={"sender": sender(context.uow, gateway, settings),
                                            "retention": retention_loop(context)})


def subject_access(request_ids) -> dict:
    """Every SMS notify holds about these requests, sent and received, read from its own database (`ccs person
    export`)."""
    from shared.db import make_engine, make_sessions
    from services.notify import service_layer

    engine = make_engine(NotifySettings.from_env().database_url)
    try:
        return service_layer.held_about(NotifyUnitOfWork(make_sessions(engine)), request_ids)
    finally:
        engine.dispose()


SERVICE = ServiceDefinition(
    name="notify",
    title="Notify",
    package="services.notify",
    routes=("/sms", "/simulator"),
    create_app=create_app,
    worker=worker,
    metadata=lambda: Base.metadata,
    subject_access=subject_access,
)
