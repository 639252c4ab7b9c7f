"""Scaled out through a PostgreSQL restart: two worker processes of every service, with every database connection
through a proxy the test cuts (all connections drop, matching's timer lock goes with its connection) and restores,
while replies, SMS and matching's timers are at work. Afterwards every request is matched once, no SMS went twice,
and each expiry, cascade step and check reminder of matching's timers happened once. PostgreSQL + RabbitMQ only:
the shared server is never stopped, only the line to it is cut."""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from services.notify.domain import UNCONFIRMED_AFTER
from shared import topology
from shared.clock import set_forward
from shared.config import SERVICES
from shared.supervisor import System
from tests.helpers import NEXT_MONDAY, wait_for
from tests.integration.test_bus import SHOPPING, drain
from tests.integration.test_matching import Matching, register
from tests.integration.test_twilio import twilio  # noqa: F401 (the fixture: Twilio's API on a local port)
from tests.proxy import TcpProxy

OUTAGE_SECONDS = 6  # the restart itself: every connection is refused meanwhile
TIMER_INTERVAL = 0.5  # seconds between runs of matching's timers here (30 in production)
PER_GROUP = 4
# A routine offer has 30 minutes to be answered, an urgent one 10: each step of the services' clock expires the
# urgent offers open then, never a routine one.
CLOCK_STEP = timedelta(minutes=15)
SENDER = "+447700900100"  # Fylde Coast's number, which volunteers text

# matching's worker, as `ccs worker matching` runs it, with its timers every TIMER_INTERVAL seconds
MATCHING_WORKER = f"""
from services.matching.entrypoints import timers
timers.timers_loop = lambda context: lambda stop: timers.run_timers(
    context.engine, context.uow, context.settings, stop, {TIMER_INTERVAL})
from shared.cli import main
main(["worker", "matching"])
"""


class Workers(System):
    """Two worker processes of every service, and nothing else (the test serves itself through in-process apps)."""

    def commands(self) -> dict[str, list[str]]:
        commands = {}
        for name in SERVICES:
            command = ([sys.executable, "-c", MATCHING_WORKER] if name == "matching" else
                       [sys.executable, "-m", "shared.cli", "worker", name])
            for n in (1, 2):
                commands[f"{name}-worker-{n}"] = command
        return commands


def through(url: str, proxy: TcpProxy) -> str:
    """A database URL that goes through the proxy instead."""
    return re.sub(r"@[^/]+/", f"@127.0.0.1:{proxy.port}/", url)


@pytest.fixture
def database_line(backend):
    """A proxy in front of the PostgreSQL server that holds the test's databases."""
    proxy = TcpProxy("127.0.0.1", int(re.search(r"@[^/:]+:(\d+)/", backend.env["MATCHING_DATABASE_URL"])[1]))
    yield proxy
    proxy.close()


@pytest.mark.real_backends
@pytest.mark.parametrize("backend", ["postgres+rabbitmq"], indirect=True)
def test_two_instances_of_every_worker_through_a_postgresql_restart_match_once_text_once_and_time_out_once(
        backend, app_for, token, twilio, database_line, monkeypatch, tmp_path):
    """Twelve requests, one volunteer asked at a time: four are accepted at the first offer (YES texted while the
    database is away), four time out once and are accepted at the second, four time out twice and are accepted at
    the third; volunteers whose checks expire soon are registered before and just before the restart. The restart
    comes as the timers expire the first offers and the YES replies arrive."""
    from services.notify.adapters import signature_for

    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    monkeypatch.setenv("CCS_MAX_ROUNDS", "5")
    monkeypatch.setenv("CCS_CLOCK_FILE", str(clock := tmp_path / "clock"))
    proxy = database_line
    # the test's own apps (a coordinator, Twilio's webhook) reach PostgreSQL directly; the workers through the proxy
    apps = {name: app_for(name) for name in ("intake", "matching", "notify")}
    matching, notify = Matching(apps["matching"]), apps["notify"]
    coordinator = token("coordinator")
    workers = Workers(var_dir=tmp_path / "workers", env={
        f"{name.upper()}_DATABASE_URL": through(backend.env[f"{name.upper()}_DATABASE_URL"], proxy)
        for name in SERVICES})
    started = time.monotonic()

    def phase(what: str) -> None:
        print(f"{time.monotonic() - started:6.1f}s {what}")

    def text(phone: str, body: str) -> None:
        form = {"From": phone, "To": SENDER, "Body": body, "MessageSid": "SM" + uuid.uuid4().hex, "NumMedia": "0"}
        signature = signature_for(notify.extensions["ccs"].settings, "/sms/inbound", form)
        answer = notify.test_client().post("/sms/inbound", data=form, headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 200, answer.data

    def ask(n: int, urgency: str) -> str:
        start = date.fromisoformat(NEXT_MONDAY) + timedelta(days=n)  # a day each: nobody is double-booked
        answer = apps["intake"].test_client().post("/requests", headers=coordinator, json={
            **SHOPPING, "person": {**SHOPPING["person"], "name": f"Person {n}"}, "urgency": urgency,
            "when": {"start": f"{start}T14:00:00+00:00", "end": f"{start}T16:00:00+00:00"}})
        assert answer.status_code == 201, answer.json
        return answer.json["id"]

    def expiring(prefix: str, count: int) -> dict[str, str]:
        """Volunteers whose criminal record check expires in ten days (each is reminded once), too far away to be
        asked; their phones by id."""
        soon = (date.today() + timedelta(days=10)).isoformat()
        made = [register(apps["matching"].test_client(), coordinator, f"Expiring {prefix}{n}",
                         f"0791120{5 + int(prefix)}{n:03d}", latitude=54.6, longitude=-3.1, max_distance_km=1, checks=[
                             {"check": "safeguarding", "done_on": "2026-01-05", "expires_on": "2035-01-05"},
                             {"check": "criminal_record", "done_on": "2025-01-05", "expires_on": soon}])
                for n in range(count)]
        return {v["id"]: v["phone"] for v in made}

    def services_now() -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=float(clock.read_text()) if clock.exists() else 0)

    def clock_on(step: timedelta = CLOCK_STEP) -> None:
        set_forward(clock, services_now() + step)

    def offered(request_id: str, round_: int):
        """The request's offer of that round, once its SMS has gone (its time to answer runs)."""
        offers = [o for o in matching.offers(request_id) if o.round == round_]
        return offers[0] if offers and offers[0].sent_at is not None else None

    def all_offered(requests: list[str], round_: int) -> list | None:
        found = [offered(r, round_) for r in requests]
        return found if all(found) else None

    def status(request_id: str) -> str:
        return matching.request(request_id).status

    def accept(offers) -> None:
        for offer in offers:
            text(phones[str(offer.volunteer_id)], f"YES {offer.code}")

    try:
        workers.start(only=list(workers.commands()))
        phones = {v["id"]: v["phone"] for v in (
            register(apps["matching"].test_client(), coordinator, f"Volunteer {n}", f"07911204{n:03d}",
                     weekly_cap=21) for n in range(3 * PER_GROUP))}
        reminded = expiring("1", 3)
        first = [ask(n, "routine") for n in range(PER_GROUP)]  # accepted at once
        second = [ask(PER_GROUP + n, "urgent") for n in range(PER_GROUP)]  # time out once
        third = [ask(2 * PER_GROUP + n, "urgent") for n in range(PER_GROUP)]  # time out twice
        everyone = first + second + third
        phase("started")
        firsts = wait_for("every request's first offer to be texted", lambda: all_offered(everyone, 1),
                          timeout=60)

        # the restart: the urgent offers come due, more checks come up for a reminder, and the database goes
        # away as the timers expire the offers and cascade, and while the first requests' YES replies arrive
        reminded |= expiring("2", 3)
        clock_on()
        wait_for("the timers to start expiring", lambda: any(
            o.status == "expired" for r in second + third for o in matching.offers(r)), timeout=30)
        phase("first offers texted, timers expiring")
        proxy.cut()
        accept(firsts[:PER_GROUP])
        time.sleep(OUTAGE_SECONDS)  # the outage itself: nothing to wait for
        proxy.restore()
        phase("restored")
        # an SMS whose sender lost the line between taking it and recording that it went stays `sending` until
        # UNCONFIRMED_AFTER has passed, and then counts as sent, never sent again (at most once, by design): move
        # the clock on that far, short of the urgent offers' ten minutes
        clock_on(UNCONFIRMED_AFTER + timedelta(minutes=1))

        wait_for("the first requests to be matched", lambda: all(status(r) == "matched" for r in first),
                 timeout=60)
        accept(wait_for("the second offers to be texted", lambda: all_offered(second, 2), timeout=60))
        wait_for("the second requests to be matched", lambda: all(status(r) == "matched" for r in second),
                 timeout=60)
        wait_for("the third requests' second offers to be texted", lambda: all_offered(third, 2), timeout=60)
        phase("second group matched")
        clock_on()
        accept(wait_for("the third offers to be texted", lambda: all_offered(third, 3), timeout=60))
        wait_for("every request to be matched", lambda: all(status(r) == "matched" for r in everyone),
                 timeout=60)
        phase("all matched")
        still: list[str] = []

        def settled() -> bool:
            still[:] = unsettled(apps, everyone, services_now())
            return not still

        try:
            wait_for("everything to settle", settled, timeout=60)
        except TimeoutError:
            raise AssertionError(f"still under way: {still}") from None
        log = "".join((workers.var_dir / "log" / f"matching-worker-{n}.log").read_text() for n in (1, 2))
    finally:
        workers.stop()

    # every request matched once: one offer a round, the last accepted, the others expired by the timers
    for requests, rounds in ((first, 1), (second, 2), (third, 3)):
        for request_id in requests:
            offers = matching.offers(request_id)
            assert [(o.round, o.status) for o in offers] == [(n, "expired") for n in range(1, rounds)] + [
                (rounds, "accepted")], request_id
    events = {kind: Counter(e["request_id"] for e in matching.events(kind))
              for kind in ("offer.made", "offer.accepted", "request.matched")}
    assert events["request.matched"] == events["offer.accepted"] == Counter(everyone)
    assert events["offer.made"] == Counter({**dict.fromkeys(first, 1), **dict.fromkeys(second, 2),
                                            **dict.fromkeys(third, 3)})
    # the restart took the timer lock with the leader's connection: it noticed, and a leader took over afterwards
    assert "matching's timer lock was lost" in log and log.count("this process runs matching's timers") >= 2
    # each expiry once: one offer a round above means no expiry was cascaded twice; and the runs that finished say
    # they expired no more offers than were expired (a run the restart broke off committed some, and said nothing)
    expired = sum(o.status == "expired" for r in everyone for o in matching.offers(r))
    assert expired == PER_GROUP * 1 + PER_GROUP * 2  # the second requests once, the third twice
    assert sum(int(n) for n in re.findall(r"timers: (\d+) offers expired", log)) <= expired
    assert sum(int(n) for n in re.findall(r"(\d+) check reminders", log)) <= len(reminded)
    # each reminder once
    reminders = Counter((e["volunteer_id"], e["check"]) for e in matching.events("volunteer.check_expiring"))
    assert reminders == Counter({(v, "criminal_record"): 1 for v in reminded})
    # no SMS twice: no number got the same text twice; each offer and reminder has one SMS in notify's record,
    # and each of those went to Twilio once, or (left `sending` as the line went) at most once
    texted = Counter((m["To"], m["Body"]) for m in twilio.created)
    assert [pair for pair, times in texted.items() if times > 1] == []
    messages = sms_record(notify)
    assert Counter(m.offer_id for m in messages if m.purpose == "offer") == Counter(
        o.id for r in everyone for o in matching.offers(r))
    assert sorted(m.to_phone for m in messages if m.purpose == "reminder" and m.to_phone in reminded.values()) \
        == sorted(reminded.values())
    for message in messages:
        went = [m["Sid"] for m in twilio.created if (m["To"], m["Body"]) == (message.to_phone, message.body)]
        assert went == [message.provider_sid] if message.provider_sid else len(went) <= 1, message.key
    assert {(m["To"], m["Body"]) for m in twilio.created} <= {(m.to_phone, m.body) for m in messages}
    for queue in topology.DEAD_LETTER_QUEUES:
        drain(queue.name, expect=0)
    print(f"settled in {time.monotonic() - started:.1f}s")


def sms_record(notify) -> list:
    """Every SMS notify has recorded."""
    from services.notify.domain import OutgoingMessage

    with notify.extensions["ccs"].sessions() as session:
        return session.scalars(sa.select(OutgoingMessage)).all()


def unsettled(apps, requests, now: datetime) -> list[str]:
    """What is still under way at the services' time `now`: events in an outbox, SMS due or being sent (reminders
    of the tasks wait for the day before), requests intake does not yet show matched."""
    from services.intake.domain import SupportRequest
    from services.notify.domain import OutgoingMessage

    pending = []
    for name, app in apps.items():
        outbox = __import__(f"services.{name}.adapters", fromlist=["outbox"]).outbox
        with app.extensions["ccs"].sessions() as session:
            if backlog := outbox.backlog(session):
                pending.append(f"{backlog} events in {name}'s outbox")
    with apps["notify"].extensions["ccs"].sessions() as session:
        pending += [f"SMS {m.purpose} to {m.to_phone} {m.status} (next attempt {m.next_attempt_at})"
                    for m in session.scalars(sa.select(OutgoingMessage).where(
                        OutgoingMessage.status.in_(("queued", "sending")) & sa.or_(
                            OutgoingMessage.next_attempt_at.is_(None), OutgoingMessage.next_attempt_at <= now)))]
    with apps["intake"].extensions["ccs"].sessions() as session:
        pending += [f"request {r} {status} in intake" for r in requests
                    if (status := session.get(SupportRequest, uuid.UUID(r)).status) != "matched"]
    return pending
