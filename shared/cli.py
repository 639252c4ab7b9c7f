"""`ccs`: run the system, its processes, migrations, tokens and the demo."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import click

from shared import config
from shared.config import SERVICES


@click.group()
def main():
    """Compassionate Communities volunteer support."""
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


@main.command()
@click.option("--port", default=8000, show_default=True, envvar="PORT", help="The front door's port.")
def run(port):
    """Start all four services and the front door on this machine, and print the address."""
    from shared.supervisor import System

    system = System(var_dir=config.var_dir(), port=port)
    click.echo("Setting up the databases ...")
    system.migrate()
    system.start()
    try:
        system.wait_until_ready()
        click.echo(f"\nCompassionate Communities is running at {system.url}\n")
        click.echo("A token for the API:  export TOKEN=$(.venv/bin/ccs tokens issue --role coordinator)")
        click.echo(f"Logs: {system.var_dir / 'log'}/   SMS from the development gateway appear below.")
        click.echo("Press Ctrl+C to stop.\n")
        follow_sms(system)
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("\nStopping ...")
        system.stop()


def follow_sms(system) -> None:
    """Print each SMS the development gateway records, until a process exits."""
    path = system.var_dir / "sms" / "sent.jsonl"
    offset = path.stat().st_size if path.exists() else 0
    while True:
        if exited := system.exited():
            raise SystemExit(f"{', '.join(exited)} stopped; see {system.var_dir / 'log'}")
        if path.exists() and path.stat().st_size > offset:
            with path.open(encoding="utf-8") as handle:
                handle.seek(offset)
                for line in handle:
                    message = json.loads(line)
                    click.echo(f"SMS to {message['to']}: {message['body']}")
                offset = handle.tell()
        time.sleep(0.2)


@main.command()
@click.argument("service", type=click.Choice(SERVICES))
def worker(service):
    """Run a service's worker: its bus consumer and outbox relay."""
    from shared.runtime import run_worker

    run_worker(service)


@main.command()
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--port", type=int, default=8001, show_default=True)
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
def web(service, port, host, workers):
    """Serve a service's HTTP API with gunicorn."""
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers",
                               str(workers), "--threads", "4", "--access-logfile", "-",
                               f"services.{service}.api:create_app()"])


@main.command()
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--host", default="0.0.0.0", show_default=True)
def frontdoor(port, host):
    """Serve the front door, routing to the services named by CCS_<SERVICE>_URL."""
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", "2",
                               "--threads", "8", "--access-logfile", "-", "shared.frontdoor:create_app_from_env()"])


@main.command()
@click.argument("services", nargs=-1, type=click.Choice(SERVICES))
def migrate(services):
    """Bring service databases (default: all) to the newest schema."""
    from shared.db import upgrade

    for name in services or SERVICES:
        upgrade(name, config.database_url(name))
        click.echo(f"{name}: database is up to date")


@main.group()
def tokens():
    """API tokens."""


@tokens.command("issue")
@click.option("--role", type=click.Choice(["admin", "coordinator", "referrer", "manager"]), required=True)
@click.option("--subject", default="cli", show_default=True, help="Who the token is for.")
@click.option("--community", "communities", multiple=True, default=["default"], show_default=True)
def issue(role, subject, communities):
    """Print a signed bearer token for a role."""
    from shared.web import issue_token

    click.echo(issue_token(config.load("cli").secret_key, subject, role, communities))


@main.command()
@click.option("--url", default=None, help="Walk through a system already running there, instead of starting one.")
def demo(url):
    """Walk through registering a volunteer, logging a request and accepting it by SMS, and print what happened."""
    from shared.demo import walk_through

    walk_through(url, echo=click.echo)


if __name__ == "__main__":
    main()
