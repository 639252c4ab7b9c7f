"""What a service tells the shared runtime about itself, and the registry that finds every service.

Each service's `bootstrap.py` declares one `ServiceDefinition` and names it in `pyproject.toml` under the entry
point group `ccs.services`; the CLI, the worker runtime, the supervisor, the front door and the migrations find
services only through `registry()`. Nothing in shared/ imports a service.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from shared.config import SERVICES

if TYPE_CHECKING:
    import uuid

    import click
    from flask import Flask
    from sqlalchemy import MetaData

    from shared.contracts import Event
    from shared.outbox import Outbox

# A background loop of a worker process (the outbox relay, matching's timers, notify's SMS sender): it runs until
# the event is set.
Loop = Callable[[threading.Event], None]


@dataclass
class WorkerParts:
    """What a service's worker process runs: one handler per event type it consumes, and its background loops.

    `handle(event)` handles an event once (False: it had been handled before) in one unit of work."""

    handle: Callable[["Event"], bool]
    event_types: frozenset[str]
    loops: dict[str, Loop] = field(default_factory=dict)
    sessions: object = None  # for the worker's own /metrics (outbox backlog)
    outbox: "Outbox | None" = None

    @classmethod
    def from_handlers(cls, name: str, app: "Flask", handlers: dict[str, Callable], outbox: "Outbox",
                      loops: dict[str, Loop] | None = None) -> "WorkerParts":
        """Parts whose `handle` runs `handlers[event.type](uow, event)` once per event, in one unit of work."""
        from shared.outbox import handle_once

        context = app.extensions["ccs"]

        def handle(event: "Event") -> bool:
            return handle_once(context.uow, name, event, handlers[event.type])

        return cls(handle=handle, event_types=frozenset(handlers), loops=loops or {}, sessions=context.sessions,
                   outbox=outbox)


@dataclass(frozen=True)
class ServiceDefinition:
    """One service as the shared runtime sees it."""

    name: str
    title: str
    package: str  # e.g. "services.intake": where its templates/ and migrations/ live
    routes: tuple[str, ...]  # the path prefixes the front door (and nginx) send to it
    create_app: Callable[..., "Flask"]  # create_app(test_config=None): the web app
    worker: Callable[["Flask"], WorkerParts]  # the worker's parts, built on an app from create_app
    metadata: Callable[[], "MetaData"]  # its tables, for migrations and their check
    commands: Callable[[], list["click.Command"]] | None = None  # its own `ccs` commands (e.g. intake's `users`)
    # What it holds about these requests' person, read from its own database (`ccs person export`)
    subject_access: Callable[[list["uuid.UUID"]], dict] | None = None

    @property
    def folder(self) -> Path:
        """The service's package folder."""
        return Path(str(resources.files(self.package)))

    @property
    def templates(self) -> Path:
        """Its Jinja templates."""
        return self.folder / "templates"

    @property
    def migrations(self) -> Path:
        """Its alembic migrations."""
        return self.folder / "migrations"

    @property
    def wsgi(self) -> str:
        """What gunicorn serves: the app factory, as `module:call()`."""
        return f"{self.package}.bootstrap:create_app()"


@lru_cache(maxsize=None)
def get(name: str) -> ServiceDefinition:
    """One service's definition, loading that service alone (a worker or web process needs only its own)."""
    found = {entry.name: entry for entry in metadata.entry_points(group="ccs.services")}
    if name not in found:
        raise RuntimeError(f"service {name!r} is not installed (run `pip install -e .` again)")
    definition = found[name].load()
    if definition.name != name:
        raise RuntimeError(f"entry point {name} names service {definition.name}")
    return definition


def registry() -> dict[str, ServiceDefinition]:
    """Every installed service, by name, in the order of `SERVICES` (which fixes their development ports)."""
    return {name: get(name) for name in SERVICES}


def routes() -> dict[str, str]:
    """Path prefix -> service, for every service: its declared routes, health and readiness checks and OpenAPI
    document."""
    table: dict[str, str] = {}
    for name, definition in registry().items():
        for prefix in (*definition.routes, f"/healthz/{name}", f"/readyz/{name}", f"/openapi/{name}.json"):
            if prefix in table:
                raise RuntimeError(f"{prefix} is claimed by {table[prefix]} and {name}")
            table[prefix] = name
    return table
