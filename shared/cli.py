"""`ccs`: run the system, its processes, migrations, tokens and the demo."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click

from shared import config
from shared.config import SERVICES
from shared.web import ROLES


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

    def interrupted(signum, frame):
        raise KeyboardInterrupt  # a service manager's SIGTERM, a closed terminal's SIGHUP: stop as Ctrl+C does

    system = System(var_dir=config.var_dir(), port=port)
    click.echo("Setting up the databases ...")
    system.migrate()
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    try:
        system.start()
        system.wait_until_ready()
        click.echo(f"\nCompassionate Communities is running at {system.url}\n")
        click.echo(f"Coordinators sign in at {system.url}/board; make yourself an account first:")
        click.echo("  .venv/bin/ccs users create --role coordinator --email you@example.org --name 'Your Name'")
        click.echo(f"API documentation: {system.url}/docs")
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
    """Serve a service's HTTP API with gunicorn (its Prometheus metrics at /metrics add up every worker's)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"ccs-{service}-metrics-")
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
def users():
    """People who sign in (kept by intake)."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--community", "communities", multiple=True, help="Repeat for several (admins, regional managers).")
@click.option("--organisation", default=None, help="A referrer's organisation, e.g. 'Fylde Coast PCN'.")
@click.password_option(help="Asked for when not given.")
def create_user(email, name, role, communities, organisation, password):
    """Create a user who can sign in to the pages and be issued API tokens."""
    import sqlalchemy as sa
    from werkzeug.security import generate_password_hash

    from services.intake.model import User
    from shared.web import claims_for

    claims = claims_for(email.lower(), role, communities, organisation)
    with intake_sessions() as sessions, sessions.begin() as session:
        if session.scalar(sa.select(User.id).where(User.email == claims["sub"])) is not None:
            raise click.ClickException(f"a user {claims['sub']} already exists")
        session.add(User(email=claims["sub"], name=name, role=role, communities=claims["communities"],
                         organisation=organisation, password_hash=generate_password_hash(password)))
    click.echo(f"{claims['sub']}: {role} in {', '.join(claims['communities'])}")


@contextmanager
def intake_sessions():
    """Sessions on intake's database, which keeps the users; its connections are closed afterwards."""
    from shared.db import make_engine, make_sessions, upgrade

    url = config.database_url("intake")
    upgrade("intake", url)
    engine = make_engine(url)
    try:
        yield make_sessions(engine)
    finally:
        engine.dispose()


@main.group()
def tokens():
    """API tokens."""


@tokens.command("issue")
@click.option("--user", "email", default=None, help="Issue for this user, with their role and communities.")
@click.option("--role", type=click.Choice(ROLES), default=None, help="Without --user: a token for this role.")
@click.option("--community", "communities", multiple=True, help="Without --user: the communities (default: the first).")
@click.option("--subject", default="cli", show_default=True, help="Without --user: who the token is for.")
def issue(email, role, communities, subject):
    """Print a signed bearer token."""
    import sqlalchemy as sa

    from shared.web import issue_token

    secret = config.load("cli").secret_key
    if email:
        from services.intake.model import User

        with intake_sessions() as sessions, sessions() as session:
            user = session.scalar(sa.select(User).where(User.email == email.lower(), User.active.is_(True)))
        if user is None:
            raise click.UsageError(f"no active user {email}")
        click.echo(issue_token(secret, user.email, user.role, user.communities, user.organisation))
    elif role:
        click.echo(issue_token(secret, subject, role, communities or None))
    else:
        raise click.UsageError("give --user EMAIL, or --role ROLE")


@main.group()
def gazetteer():
    """Postcode districts and their centres."""


@gazetteer.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load_gazetteer(path):
    """Load a GeoNames postal-code file (e.g. GB.txt, GB_full.txt, CA.txt) for every service to use."""
    from shared import gazetteer as module

    count = module.load(path, config.var_dir())
    click.echo(f"{count} postcode districts loaded from {path.name}")


@main.group()
def metrics():
    """The metrics service's counts."""


@metrics.command()
def rebuild():
    """Work out each fact's community and day again (after events arrived out of order, or a time zone changed)."""
    from services.metrics.handlers import rebuild as rebuild_facts
    from shared.db import make_engine, make_sessions

    engine = make_engine(config.database_url("metrics"))
    try:
        with make_sessions(engine).begin() as session:
            changed = rebuild_facts(session)
    finally:
        engine.dispose()
    click.echo(f"metrics: {changed} facts changed")


@main.command()
@click.argument("phone")
@click.argument("body")
@click.option("--url", default="http://localhost:8000", show_default=True, envvar="URL",
              help="The system's address (its PUBLIC_URL).")
def text(phone, body, url):
    """Text the system as PHONE would, through Twilio's webhook, signed as Twilio signs it; print the answer."""
    import xml.etree.ElementTree as ET

    from shared.demo import text_in

    answer = ET.fromstring(text_in(url.rstrip("/"), phone, body).text).find("Message")
    click.echo(answer.text if answer is not None else "(no answer by return; any SMS it causes appear in `make run`)")


@main.command()
@click.option("--url", default=None, help="Walk through a system already running there, instead of starting one.")
def demo(url):
    """Walk through registering a volunteer, logging a request and accepting it by SMS, and print what happened."""
    from shared.demo import walk_through

    walk_through(url, echo=click.echo)


if __name__ == "__main__":
    main()
