"""Metrics' own `ccs` commands: `ccs metrics rebuild`."""

from __future__ import annotations

import click

from services.metrics import service_layer
from services.metrics.adapters import MetricsUnitOfWork
from shared.db import make_engine, make_sessions


@click.group()
def metrics():
    """The metrics service's counts."""


@metrics.command()
def rebuild():
    """Work out each fact's community and day again (after events arrived out of order, or a time zone changed)."""
    from services.metrics.bootstrap import MetricsSettings

    engine = make_engine(MetricsSettings.from_env().database_url)
    try:
        changed = service_layer.rebuild(MetricsUnitOfWork(make_sessions(engine)))
    finally:
        engine.dispose()
    click.echo(f"metrics: {changed} facts changed")
