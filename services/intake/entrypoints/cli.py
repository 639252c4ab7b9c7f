"""Intake's `ccs` commands: `ccs users create` (people who sign in are kept by intake), `ccs tokens issue` and
`ccs tokens revoke`, `ccs directory import`, and `ccs person erase` / `ccs person export` (a person's rights to
erasure and to a copy of their data)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import json
import uuid

import click

from services.intake import service_layer
from services.intake.adapters import passwords
from services.intake.bootstrap import IntakeSettings, unit_of_work_for
from services.intake.directory import DirectoryProblem, read_file
from services.intake.domain import InvalidRevocation, NotFound, UserExists, WeakPassword
from shared import clock
from shared.auth import ROLES, Actor
from shared.communities import all_communities
from shared.db import make_engine, make_sessions, upgrade
from shared.service import registry
from shared.web import claims_for, issue_token, token_id


@click.group()
def users():
    """People who sign in (kept by intake)."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--community", "communities", multiple=True, help="Repeat for several (admins, regional managers).")
@click.option("--organisation", default=None, help="A referrer's organisation, e.g. 'Fylde Coast PCN'.")
@click.password_option(help="Asked for when not given: at least 12 characters, and not a common password.")
def create_user(email, name, role, communities, organisation, password):
    """Create a user who can sign in to the pages and be issued API tokens."""
    claims = claims_for(email.lower(), role, communities, organisation)
    with intake_unit_of_work() as uow:
        try:
            service_layer.create_user(uow, passwords, claims["sub"], name, role, claims["communities"], organisation,
                                      password)
        except (UserExists, WeakPassword) as err:
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
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Expire sooner than the deployment's lifetime (CCS_TOKEN_LIFETIME_DAYS, default 30).")
def issue(email, role, communities, subject, days):
    """Print a signed bearer token, which expires after the deployment's token lifetime (or --days, if sooner)."""
    settings = IntakeSettings.from_env()
    lifetime = min(days or settings.token_lifetime_days, settings.token_lifetime_days)
    if email:
        with intake_unit_of_work() as uow:
            user = service_layer.active_user(uow, email)
        if user is None:
            raise click.UsageError(f"no active user {email}")
        click.echo(issue_token(settings.secret_key, user.email, user.role, user.communities, user.organisation,
                               days=lifetime))
    elif role:
        click.echo(issue_token(settings.secret_key, subject, role, communities or None, days=lifetime))
    else:
        raise click.UsageError("give --user EMAIL, or --role ROLE")


@tokens.command("revoke")
@click.argument("token", required=False)
@click.option("--user", "subject", default=None,
              help="Instead: revoke every token of this user (or --subject) issued before now.")
def revoke(token, subject):
    """Revoke one token, by its id (`jti`) or the token itself; or with --user, all of one holder's tokens issued
    until now. Every service refuses them (401) once it has heard."""
    settings = IntakeSettings.from_env()
    if (token is None) == (subject is None):
        raise click.UsageError("give a token (or its id), or --user EMAIL")
    jti = token_id(settings.secret_key, token) if token and "." in token else token
    if token and jti is None:
        raise click.UsageError("that is not a token of this deployment")
    with intake_unit_of_work() as uow:
        try:
            service_layer.revoke_tokens(uow, settings, jti=jti, subject=subject and subject.strip().lower(),
                                        now=datetime.now(timezone.utc))
        except InvalidRevocation as err:
            raise click.UsageError(str(err)) from err
    click.echo(f"revoked token {jti}" if jti else f"revoked every token of {subject.strip().lower()} issued until now")


@click.group()
def directory():
    """The signposting directory: services and groups to point people to."""


@directory.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--community", required=True, help="The community whose directory it is, e.g. fylde-coast.")
def import_directory(file, community):
    """Import an Open Referral UK / HSDS JSON file (a list of services, or a page of them with `content`) or a CSV
    sheet (the template's columns). Every problem is named by its place in the file, and nothing is imported while
    there is one; an entry with an id imported before is updated."""
    if community not in all_communities():
        raise click.UsageError(f"there is no community {community!r}")
    try:
        sheet = read_file(file.read_bytes(), file.name)
    except DirectoryProblem as err:
        raise click.ClickException(str(err)) from err
    with intake_unit_of_work() as uow:
        outcome = service_layer.import_directory(uow, Actor("cli", "admin", (community,)), sheet)
    for problem in outcome["errors"]:
        click.echo(f"{problem['where']}: {problem['field'] or 'service'}: {problem['detail']}", err=True)
    if outcome["errors"]:
        raise click.ClickException(f"{len(outcome['errors'])} problem(s): nothing was imported")
    click.echo(f"imported {outcome['imported']}, updated {outcome['updated']} of {outcome['rows']} into {community}"
               + (f"; left out {len(outcome['skipped'])} offering none of the kinds of help" if outcome["skipped"]
                  else ""))


@click.group()
def person():
    """A person's data: a copy of everything held about them (subject access), or its erasure at their request."""


def _by_option(function):
    return click.option("--by", default="cli", show_default=True,
                        help="Who is acting (your email address): recorded, with when and which requests.")(function)


def _acting(by: str) -> Actor:
    return Actor(by.strip().lower() or "cli", "admin", tuple(all_communities()))


@person.command("erase")
@click.argument("person_id", type=click.UUID)
@_by_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase_person(person_id: uuid.UUID, by: str, yes: bool):
    """Erase a person (for now: the person of the request with this id) from every service: their name, phone,
    address, date of birth and notes on intake's records and every copy of them, the SMS about their requests
    (notify) and the link between their requests (matching). The requests stay, without them, so every count stays
    the same. It cannot be undone."""
    if not yes:
        click.confirm(f"Erase the details of the person of {person_id} from every service? This cannot be undone",
                      abort=True)
    with intake_unit_of_work() as uow:
        try:
            erased = service_layer.erase_person(uow, _acting(by), person_id, clock.utcnow())
        except NotFound as err:
            raise click.ClickException(str(err)) from err
    click.echo(f"erased the person of {len(erased)} request(s): {', '.join(str(r.id) for r in erased)}; the other "
               f"services remove theirs as they hear (person.erased)")
    still_open = [r for r in erased if r.is_open]
    if still_open:
        click.echo(f"{len(still_open)} of them still open (volunteers may still be asked, and will be told the "
                   f"coordinator will call): cancel them if no help is wanted", err=True)


@person.command("export")
@click.argument("person_id", type=click.UUID)
@_by_option
def export_person(person_id: uuid.UUID, by: str):
    """Print as JSON everything held about a person (for now: the person of the request with this id) in every
    service: intake's requests, consents, timeline and audit entries, matching's record of the help, and notify's
    SMS about them. Each service reads its own database."""
    with intake_unit_of_work() as uow:
        try:
            held = {"intake": service_layer.export_person(uow, _acting(by), person_id)}
        except NotFound as err:
            raise click.ClickException(str(err)) from err
    request_ids = [uuid.UUID(str(r["id"])) for r in held["intake"]["requests"]]
    for name, definition in registry().items():
        if name != "intake" and definition.subject_access is not None:
            held[name] = definition.subject_access(request_ids)
    click.echo(json.dumps({"person": str(person_id), **held}, indent=2, default=str, ensure_ascii=False))


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
