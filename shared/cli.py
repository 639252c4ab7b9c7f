"""`ccs`: run the system, its processes, migrations, tokens and the demo."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import click

from shared import config
from shared.config import ACCESS_LOG, SERVICES, SettingsError
from shared.service import get as get_service
from shared.service import registry


class Commands(click.Group):
    """`ccs`'s own commands, then each service's (intake's `users` and `tokens`, metrics' `metrics`, ...), which are
    loaded only when asked for, so starting a worker does not import every service."""

    def service_commands(self) -> dict[str, click.Command]:
        """Every service's own commands, by name."""
        return {command.name: command for definition in registry().values()
                for command in (definition.commands() if definition.commands else ())}

    def list_commands(self, ctx):
        """Our commands and the services', for --help."""
        return sorted({*super().list_commands(ctx), *self.service_commands()})

    def get_command(self, ctx, name):
        """Our command by that name, else a service's."""
        return super().get_command(ctx, name) or self.service_commands().get(name)

    def invoke(self, ctx):
        """Run the command; a setting that cannot be used, no project folder found, or no system running where one
        is needed, is said in a sentence (and exit code 1), not a traceback."""
        from shared.supervisor import NotRunning

        try:
            return super().invoke(ctx)
        except (SettingsError, NotRunning) as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=Commands)
def main():
    """Compassionate Communities volunteer support."""
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


@main.command()
@click.option("--port", default=8000, show_default=True, envvar="PORT", help="The front door's port.")
def run(port):
    """Start all four services and the front door on this machine, and print the address."""
    from shared.supervisor import NotRunning, System, running

    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def ignore_stop_signals():
        for signum in stop_signals:
            signal.signal(signum, signal.SIG_IGN)

    def interrupted(signum, frame):
        # Ctrl+C, a service manager's SIGTERM, a closed terminal's SIGHUP: stop. Only the first one counts; another
        # (make sends its own) must not cut the stopping short and leave the processes we started running.
        ignore_stop_signals()
        raise KeyboardInterrupt

    system = System(var_dir=config.var_dir(), port=port)
    try:
        already = running(system.var_dir)
    except NotRunning:
        pass
    else:  # two systems on one var/ would share its databases and its bus
        raise click.ClickException(f"The system is already running from {system.var_dir}, at {already['url']} "
                                   f"(process {already['pid']}): use it, or stop it (Ctrl+C in its window) first.")
    click.echo(f"Setting up the databases in {system.var_dir} ...")
    system.migrate()
    for signum in stop_signals:
        signal.signal(signum, interrupted)
    try:
        system.start()
        system.wait_until_ready()
        system.announce()
        click.echo(f"\nCompassionate Communities is running at {system.url}\n")
        click.echo(f"Coordinators sign in at {system.url}/login; make yourself an account first:")
        click.echo("  .venv/bin/ccs users create --role coordinator --community fylde-coast --email you@example.org "
                   "--name 'Your Name'")
        click.echo(f"API documentation: {system.url}/docs")
        click.echo("In another terminal, from the project folder:  export URL=$(.venv/bin/ccs url)  "
                   "TOKEN=$(.venv/bin/ccs tokens issue --role coordinator)")
        click.echo(quiet_hours_said())
        click.echo(f"Logs: {system.var_dir / 'log'}/   SMS from the development gateway appear below.")
        click.echo("Press Ctrl+C to stop.\n")
        follow_sms(system)
    except KeyboardInterrupt:
        pass
    finally:
        ignore_stop_signals()  # also when we stop because something failed
        click.echo("\nStopping ...")
        system.stop()


QUIET_HOURS_OFF = "CCS_QUIET_HOURS=off make run"


def quiet_hours_said() -> str:
    """What `ccs run` says of the quiet hours it runs with (CCS_QUIET_HOURS, else each community's own)."""
    hours = config.quiet_hours_from(os.environ)
    if hours == "off":
        return "SMS go at any hour (CCS_QUIET_HOURS=off)."
    if hours is None:
        return (f"Routine SMS wait out each community's quiet hours (21:00-08:00 in its time zone, unless "
                f"communities.json says otherwise); to text at any hour: {QUIET_HOURS_OFF}")
    return f"Routine SMS wait out the quiet hours {hours} (CCS_QUIET_HOURS), in each community's time zone."


def held_said(notice: dict) -> str:
    """A line for an SMS held for the quiet hours: to whom, until when in its community's time, and what it says."""
    from datetime import datetime

    until = datetime.fromisoformat(notice["until"])
    return (f"SMS to {notice['to']} held for the quiet hours until {until:%H:%M on %a %d %b} ({notice['zone']} "
            f"time): {notice['body']}")


def new_records(path: Path, offset: int) -> tuple[list[dict], int]:
    """The JSON lines added to `path` since `offset`, and the offset after them."""
    if not path.exists() or path.stat().st_size <= offset:
        return [], offset
    with path.open(encoding="utf-8") as handle:
        handle.seek(offset)
        records = [json.loads(line) for line in handle]
        return records, handle.tell()


def follow_sms(system) -> None:
    """Print each SMS the development gateway records (and each it holds for the quiet hours, saying until when),
    and restart (after a back-off) any process that exits, until we are stopped."""
    sent, held = system.var_dir / "sms" / "sent.jsonl", system.var_dir / "sms" / "held.jsonl"
    offsets = {path: path.stat().st_size if path.exists() else 0 for path in (sent, held)}
    told = False
    while True:
        for line in system.restart_exited():
            click.echo(line)
        notices, offsets[held] = new_records(held, offsets[held])
        for notice in notices:
            click.echo(held_said(notice))
            if not told:
                told = True
                click.echo(f"  (It goes then. Reply to it with its code all the same, or, to have texts go at once, "
                           f"stop with Ctrl+C and start with: {QUIET_HOURS_OFF})")
        messages, offsets[sent] = new_records(sent, offsets[sent])
        for message in messages:
            click.echo(f"SMS to {message['to']}: {message['body']}")
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
                               str(workers), "--threads", "4", *ACCESS_LOG, get_service(service).wsgi])


@main.command()
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--host", default="0.0.0.0", show_default=True)
def frontdoor(port, host):
    """Serve the front door, routing to the services named by CCS_<SERVICE>_URL."""
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", "2",
                               "--threads", "8", *ACCESS_LOG, "shared.frontdoor:create_app_from_env()"])


@main.command()
@click.argument("services", nargs=-1, type=click.Choice(SERVICES))
def migrate(services):
    """Bring service databases (default: all) to the newest schema."""
    from shared.db import upgrade

    for name in services or SERVICES:
        upgrade(name, config.database_url(name))
        click.echo(f"{name}: database is up to date")


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


def running_system() -> dict:
    """What var/running.json says of the system running from this project's var/ folder (NotRunning if none)."""
    from shared.supervisor import running

    return running(config.var_dir())


@main.command()
def url():
    """Print the address of the system running from this project (`make run`), to open or to call."""
    click.echo(running_system()["url"])


@main.command()
@click.argument("phone")
@click.argument("body")
@click.option("--url", default=None, help="The system's address, if it is not the one running from this project.")
def text(phone, body, url):
    """Text the system as PHONE would, through Twilio's webhook, signed as Twilio signs it; print the answer."""
    import xml.etree.ElementTree as ET

    import requests

    from shared.demo import text_in

    system = running_system() if url is None else {"url": url.rstrip("/"), "public_url": None}
    try:
        answer = text_in(system["url"], phone, body, public_url=system["public_url"])
    except requests.ConnectionError:
        raise click.ClickException(f"Nothing answers at {system['url']}: is the system running (make run)?") from None
    message = ET.fromstring(answer.text).find("Message")
    click.echo(message.text if message is not None else
               "(no answer by return; any SMS it causes appear in the `make run` window)")


@main.command()
@click.option("--url", default=None, help="Walk through a system already running there, instead of starting one.")
@click.option("--running", is_flag=True, help="Walk through the system running from this project (`make run`).")
def demo(url, running):
    """Walk through registering a volunteer, logging a request and accepting it by SMS, and print what happened."""
    from shared.demo import walk_through

    walk_through(running_system()["url"] if running else url, echo=click.echo)


@main.group()
def deploy():
    """Files for production that are written from the code."""


@deploy.command()
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("deploy/nginx.conf"),
              show_default=True)
def nginx(output):
    """Write nginx's routing from the routes each service declares."""
    from shared.frontdoor import nginx_config

    output.write_text(nginx_config(), encoding="utf-8")
    click.echo(f"{output}: written")



# --- dead letters ---------------------------------------------------------------------------------------------------

AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(value: str | None) -> float | None:
    """An age such as `30m`, `2h` or `7d`, in seconds."""
    if value is None:
        return None
    number, unit = value[:-1], value[-1:]
    if unit not in AGE_UNITS or not number.isdigit():
        raise click.BadParameter(f"an age such as 30m, 2h or 7d, not {value!r}", param_hint="--older-than")
    return int(number) * AGE_UNITS[unit]


def chosen_dead_letters(function):
    """The options that choose dead letters: by queue, by event type, by age."""
    function = click.option("--older-than", help="Only those dead for longer than this: 30m, 2h, 7d.")(function)
    function = click.option("--type", "event_type", help="Only events of this type, e.g. request.submitted.")(function)
    return click.option("--queue", help="Only this queue's, e.g. matching.intake.requests.")(function)


@main.group("dead-letters")
def dead_letters():
    """Messages no handler could take: list, show, replay or purge them (by queue, event type or age)."""


def _dead_letter_store():
    from shared.bus import DeadLetters

    return DeadLetters(config.load("cli"))


def _echo_letters(letters, verb: str) -> None:
    for letter in letters:
        summary = letter.summary()
        since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(summary["dead_since"])) if summary["dead_since"] else "?"
        click.echo(f"{verb}{summary['queue']}  {summary['type']}  {summary['event_id'] or '-'}  since {since} UTC  "
                   f"{summary['reason'][:120]}")
    click.echo(f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''}")


@dead_letters.command("list")
@chosen_dead_letters
def list_dead_letters(queue, event_type, older_than):
    """One line each: queue, event type, event id, since when, and why."""
    _echo_letters(_dead_letter_store().list(queue, event_type, parse_age(older_than)), "")


@dead_letters.command("show")
@click.argument("event_id")
def show_dead_letter(event_id):
    """One dead letter's details as JSON (its headers and reason, not its payload, which may name a person)."""
    found = _dead_letter_store().list(event_id=event_id)
    if not found:
        raise click.ClickException(f"no dead letter with event id {event_id}")
    for letter in found:
        headers = {k: v for k, v in (letter.message.headers or {}).items() if k.startswith("x-")}
        click.echo(json.dumps({**letter.summary(), "headers": headers}, indent=2, default=str))


@dead_letters.command("replay")
@chosen_dead_letters
@click.option("--event-id", help="Only this event.")
def replay_dead_letters(queue, event_type, older_than, event_id):
    """Put them back on their queues to be handled again, after the cause is fixed."""
    _echo_letters(_dead_letter_store().replay(queue, event_type, parse_age(older_than), event_id), "replayed ")


@dead_letters.command("purge")
@chosen_dead_letters
@click.option("--event-id", help="Only this event.")
@click.confirmation_option(prompt="Drop these dead letters for good?")
def purge_dead_letters(queue, event_type, older_than, event_id):
    """Drop them for good."""
    _echo_letters(_dead_letter_store().purge(queue, event_type, parse_age(older_than), event_id), "purged ")


if __name__ == "__main__":
    main()
