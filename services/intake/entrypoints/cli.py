"""Intake's `ccs` commands: `ccs users create` (people who sign in are kept by intake) and `ccs tokens issue`."""

from __future__ import annotations

from contextlib import contextmanager

import click

from services.intake import service_layer
from services.intake.adapters import passwords
from services.intake.bootstrap import IntakeSettings, unit_of_work_for
from services.intake.domain import UserExists
from shared.auth import ROLES
from shared.db import make_engine, make_sessions, upgrade
from shared.web import claims_for, issue_token


@click.group()
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
    claims = claims_for(email.lower(), role, communities, organisation)
    with intake_unit_of_work() as uow:
        try:
            service_layer.create_user(uow, passwords, claims["sub"], name, role, claims["communities"], organisation,
                                      password)
        except UserExists as err:
            raise click.ClickException(str(err)) from err
    click.echo(f"{claims['sub']}: {role} in {', '.join(claims['communities'])}")


@click.group()
def tokens():
    """API tokens."""


@tokens.command("issue")
@click.option("--user", "email", default=None, help="Issue for this user, with their role and communities.")
@click.option("--role", type=click.Choice(ROLES), default=None, help="Without --user: a token for this role.")
@click.option("--community", "communities", multiple=True, help="Without --user: the communities (default: the first).")
@click.option("--subject", default="cli", show_default=True, help="Without --user: who the token is for.")
def issue(email, role, communities, subject):
    """Print a signed bearer token."""
    secret = IntakeSettings.from_env().secret_key
    if email:
        with intake_unit_of_work() as uow:
            user = service_layer.active_user(uow, email)
        if user is None:
            raise click.UsageError(f"no active user {email}")
        click.echo(issue_token(secret, user.email, user.role, user.communities, user.organisation))
    elif role:
        click.echo(issue_token(secret, subject, role, communities or None))
    else:
        raise click.UsageError("give --user EMAIL, or --role ROLE")


@contextmanager
def intake_unit_of_work():
    """A unit of work on intake's database (brought to the newest schema), which keeps the users; its connections
    are closed afterwards."""
    url = IntakeSettings.from_env().database_url
    upgrade("intake", url)
    engine = make_engine(url)
    try:
        yield unit_of_work_for(make_sessions(engine))
    finally:
        engine.dispose()
